//! Media bytes in the Worker: request bodies and R2 objects handed on as streams, and the
//! `BlobStore` port on the `MEDIA` R2 bucket.

use futures::stream::{self, StreamExt};
use worker::web_sys::ReadableStream;
use worker::{ByteStream, Env, Response, ResponseBody, ResponseBuilder};

use crate::platform::{BlobStore, Body, Fut, Opaque, Slice};

/// A request body or object body, kept unread.
pub(super) fn opaque_stream(stream: ReadableStream) -> Opaque {
    Opaque::new(Box::new(stream))
}

fn take_stream(opaque: &Opaque) -> worker::Result<ReadableStream> {
    opaque
        .take()
        .and_then(|inner| inner.downcast::<ReadableStream>().ok())
        .map(|stream| *stream)
        .ok_or_else(|| worker::Error::RustError("a media stream was used twice".into()))
}

/// The response for a media body. A stream is handed to the runtime as is (no CPU spent on
/// it in wasm); a framed one (federation's `multipart/mixed`) passes through wasm chunk by
/// chunk, since the runtime cannot join streams for us.
pub(super) fn response(head: ResponseBuilder, body: Body) -> worker::Result<Response> {
    match body {
        Body::Bytes(bytes) => Ok(head.fixed(bytes)),
        Body::Stream(opaque) => Ok(head.stream(take_stream(&opaque)?)),
        Body::Framed {
            head: first,
            inner,
            tail,
        } => {
            let inner = ByteStream::from(take_stream(&inner)?);
            let chunks = stream::once(async move { Ok(first) })
                .chain(inner)
                .chain(stream::once(async move { Ok(tail) }));
            head.from_stream(chunks)
        }
    }
}

/// The `MEDIA` bucket.
pub(super) struct R2(pub Env);

impl R2 {
    fn bucket(&self) -> Result<worker::Bucket, String> {
        self.0
            .bucket("MEDIA")
            .map_err(|e| format!("the MEDIA bucket is not bound: {e}"))
    }
}

impl BlobStore for R2 {
    fn put<'a>(
        &'a self,
        key: &'a str,
        body: Body,
        _length: u64,
        content_type: &'a str,
    ) -> Fut<'a, Result<(), String>> {
        Box::pin(async move {
            let bucket = self.bucket()?;
            let data = match body {
                Body::Bytes(bytes) => worker::Data::Bytes(bytes),
                Body::Stream(opaque) => {
                    // A request body with a Content-Length is a stream of known length, which
                    // R2 takes as it is: the bytes never pass through wasm.
                    worker::Data::ReadableStream(take_stream(&opaque).map_err(|e| e.to_string())?)
                }
                Body::Framed { .. } => return Err("a framed body cannot be stored".into()),
            };
            let metadata = worker::HttpMetadata {
                content_type: Some(content_type.to_owned()),
                ..Default::default()
            };
            bucket
                .put(key, data)
                .http_metadata(metadata)
                .execute()
                .await
                .map(|_| ())
                .map_err(|e| format!("R2 put {key}: {e}"))
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        slice: Option<Slice>,
    ) -> Fut<'a, Result<Option<Body>, String>> {
        Box::pin(async move {
            let bucket = self.bucket()?;
            let mut get = bucket.get(key);
            if let Some(Slice { offset, length }) = slice {
                get = get.range(worker::Range::OffsetWithLength { offset, length });
            }
            let Some(object) = get
                .execute()
                .await
                .map_err(|e| format!("R2 get {key}: {e}"))?
            else {
                return Ok(None);
            };
            let Some(body) = object.body() else {
                return Ok(None);
            };
            match body.response_body().map_err(|e| e.to_string())? {
                ResponseBody::Stream(stream) => Ok(Some(Body::Stream(opaque_stream(stream)))),
                ResponseBody::Body(bytes) => Ok(Some(Body::Bytes(bytes))),
                ResponseBody::Empty => Ok(Some(Body::Bytes(Vec::new()))),
            }
        })
    }

    fn read<'a>(&'a self, key: &'a str) -> Fut<'a, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move {
            let bucket = self.bucket()?;
            let Some(object) = bucket
                .get(key)
                .execute()
                .await
                .map_err(|e| format!("R2 get {key}: {e}"))?
            else {
                return Ok(None);
            };
            match object.body() {
                Some(body) => body.bytes().await.map(Some).map_err(|e| e.to_string()),
                None => Ok(None),
            }
        })
    }

    fn delete(&self, keys: Vec<String>) -> Fut<'_, Result<(), String>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(());
            }
            let bucket = self.bucket()?;
            // R2 deletes at most 1000 keys per call.
            for chunk in keys.chunks(1000) {
                bucket
                    .delete_multiple(chunk.to_vec())
                    .await
                    .map_err(|e| format!("R2 delete: {e}"))?;
            }
            Ok(())
        })
    }
}
