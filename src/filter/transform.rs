//! `requestTransform` / `responseTransform` (placeholder until implemented).
