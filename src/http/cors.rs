//! CORS headers. Browser clients (Element Web and others) call the client API and the
//! `.well-known` files from another origin, so every response carries these headers and every
//! `OPTIONS` preflight is answered, as the client-server spec recommends.

pub const CORS_HEADERS: [(&str, &str); 4] = [
    ("Access-Control-Allow-Origin", "*"),
    (
        "Access-Control-Allow-Methods",
        "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    ),
    (
        "Access-Control-Allow-Headers",
        "X-Requested-With, Content-Type, Authorization, Date",
    ),
    // Browsers hide response headers from scripts unless listed: rate-limited clients need this.
    ("Access-Control-Expose-Headers", "Retry-After"),
];
