//! Bytes that may be too big to hold: media bodies on their way in (an upload) and out (a
//! download), and the object store that keeps them (R2 in the Worker, a map in native tests).
//!
//! A body is either bytes the server's code holds, or a platform stream it only hands on (the
//! request's body into the store, the store's object into the response) without reading it,
//! so a 50 MB file never passes through the Worker's memory (docs/design.md, "Media").

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use super::Fut;

/// A platform stream the server's code passes on unread. Only `runtime/` (or a native fake)
/// knows what is inside; it can be taken once.
#[derive(Clone, Default)]
pub struct Opaque(Rc<RefCell<Option<Box<dyn Any>>>>);

impl Opaque {
    pub fn new(inner: Box<dyn Any>) -> Self {
        Self(Rc::new(RefCell::new(Some(inner))))
    }

    /// The stream, once: a second take finds nothing.
    pub fn take(&self) -> Option<Box<dyn Any>> {
        self.0.borrow_mut().take()
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opaque(..)")
    }
}

/// A body in or out.
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// A platform stream, with its length when known.
    Stream(Opaque),
    /// A stream between two pieces of bytes: a `multipart/mixed` answer around a stored object.
    Framed {
        head: Vec<u8>,
        inner: Opaque,
        tail: Vec<u8>,
    },
}

/// A slice of an object: `length` bytes from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub offset: u64,
    pub length: u64,
}

/// The object store for media: keys are ours (`media::storage_key`), values are bytes.
pub trait BlobStore {
    /// Stores `body` (of `length` bytes) under `key`, replacing what was there.
    fn put<'a>(
        &'a self,
        key: &'a str,
        body: Body,
        length: u64,
        content_type: &'a str,
    ) -> Fut<'a, Result<(), String>>;
    /// The object (or the slice of it) as a body to hand on; `None` when there is none.
    fn get<'a>(
        &'a self,
        key: &'a str,
        slice: Option<Slice>,
    ) -> Fut<'a, Result<Option<Body>, String>>;
    /// The whole object as bytes, for the server's own work on it (thumbnails); `None` when
    /// there is none.
    fn read<'a>(&'a self, key: &'a str) -> Fut<'a, Result<Option<Vec<u8>>, String>>;
    fn delete(&self, keys: Vec<String>) -> Fut<'_, Result<(), String>>;
}
