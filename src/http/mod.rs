//! The HTTP surface shared by every API: routing, Matrix errors, CORS, JSON responses.
//! Nothing here knows about the Workers runtime; `runtime/` converts to and from its types.

pub mod cors;
pub mod error;
pub mod response;
pub mod route;

pub use error::{ErrorCode, MatrixError};
pub use response::{JsonResponse, MediaResponse};
