//! Optional features, each gated here at its `mod` line. Features whose fields are not yet
//! implemented are still rejected by `conduit validate` ("not supported yet").

/// The optional features compiled into this binary.
pub fn compiled_features() -> Vec<&'static str> {
    [
        ("jwt", cfg!(feature = "jwt")),
        ("consumers", cfg!(feature = "consumers")),
        ("forward-auth", cfg!(feature = "forward-auth")),
        ("cache", cfg!(feature = "cache")),
        ("acme", cfg!(feature = "acme")),
        ("rhai", cfg!(feature = "rhai")),
        ("wasm", cfg!(feature = "wasm")),
        ("tcp", cfg!(feature = "tcp")),
        ("upload", cfg!(feature = "upload")),
        ("redis", cfg!(feature = "redis")),
        ("disk-cache", cfg!(feature = "disk-cache")),
        ("fault-injection", cfg!(feature = "fault-injection")),
        ("otlp", cfg!(feature = "otlp")),
        ("kubernetes", cfg!(feature = "kubernetes")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}
