//! `rateLimit`: requests per window per key (placeholder until implemented).
