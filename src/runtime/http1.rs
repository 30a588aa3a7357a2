//! A one-request HTTP/1.1 client over a TLS socket, for destinations whose certificate name
//! differs from the host connected to ([`Destination::needs_socket`]): `fetch` always checks
//! the certificate against the URL's host, while `connect()` with `secureTransport: "starttls"`
//! and `startTls({ expectedServerHostname })` checks it against the name the spec asks for.
//!
//! workers-rs 0.8.7's `Socket::start_tls` takes no options, so the upgrade is called on the raw
//! JS socket here. Framing lives in the pure [`crate::discovery::http1`]. Sockets cannot reach
//! Cloudflare's own IP ranges, so callers use `fetch` whenever `needs_socket()` is false.

use std::time::Duration;

use futures::future::{select, Either};
use worker::js_sys::{Function, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::ReadableStreamDefaultReader;
use worker::worker_sys::Socket;
use worker::Delay;

use crate::discovery::http1::{encode_request, parse_response, Progress, Request, Response};
use crate::discovery::Destination;

/// Why an exchange over a socket failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SocketError(pub String);

impl std::fmt::Display for SocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "socket request failed: {}", self.0)
    }
}

impl std::error::Error for SocketError {}

fn js_error(context: &str) -> impl Fn(JsValue) -> SocketError + '_ {
    move |value| {
        let text = value
            .dyn_ref::<worker::js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| value.as_string())
            .unwrap_or_else(|| format!("{value:?}"));
        SocketError(format!("{context}: {text}"))
    }
}

/// Sends `request` (whose `host` should be `destination.host_header`) and reads the whole
/// response, within `timeout`. One connection per request (`Connection: close`).
pub(crate) async fn send(
    destination: &Destination,
    request: &Request<'_>,
    timeout: Duration,
) -> Result<Response, SocketError> {
    let bytes = encode_request(request).map_err(|e| SocketError(e.to_string()))?;
    let socket = open_tls(destination)?;
    let exchange = exchange(&socket, &bytes);
    futures::pin_mut!(exchange);
    let outcome = match select(exchange, Delay::from(timeout)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(SocketError(format!(
            "no complete answer from {} within {} s",
            destination.authority(),
            timeout.as_secs()
        ))),
    };
    // Closing is best effort: the connection is finished (or abandoned) either way.
    if let Ok(promise) = socket.close() {
        let _ = JsFuture::from(promise).await;
    }
    outcome
}

/// Connects to the destination's host and port and upgrades to TLS at once, expecting a
/// certificate for `tls_server_name`.
fn open_tls(destination: &Destination) -> Result<Socket, SocketError> {
    let address = object(&[
        ("hostname", JsValue::from_str(&destination.connect_host)),
        ("port", JsValue::from(destination.connect_port)),
    ])?;
    let options = object(&[
        ("secureTransport", JsValue::from_str("starttls")),
        ("allowHalfOpen", JsValue::FALSE),
    ])?;
    let plain =
        worker::worker_sys::connect(address.into(), options.into()).map_err(js_error("connect"))?;
    let start_tls: Function = Reflect::get(&plain, &JsValue::from_str("startTls"))
        .map_err(js_error("startTls"))?
        .dyn_into()
        .map_err(js_error("startTls is not a function"))?;
    let tls_options = object(&[(
        "expectedServerHostname",
        JsValue::from_str(&destination.tls_server_name),
    )])?;
    let secure = start_tls
        .call1(&plain, &tls_options)
        .map_err(js_error("startTls"))?;
    Ok(secure.unchecked_into())
}

fn object(fields: &[(&str, JsValue)]) -> Result<Object, SocketError> {
    let object = Object::new();
    for (name, value) in fields {
        Reflect::set(&object, &JsValue::from_str(name), value).map_err(js_error(name))?;
    }
    Ok(object)
}

/// Writes the request, then reads until the framing says the response is complete.
async fn exchange(socket: &Socket, bytes: &[u8]) -> Result<Response, SocketError> {
    let writer = socket
        .writable()
        .map_err(js_error("writable"))?
        .get_writer()
        .map_err(js_error("writer"))?;
    JsFuture::from(writer.write_with_chunk(&Uint8Array::from(bytes)))
        .await
        .map_err(js_error("write"))?;
    writer.release_lock();

    let reader: ReadableStreamDefaultReader = socket
        .readable()
        .map_err(js_error("readable"))?
        .get_reader()
        .dyn_into()
        .map_err(|object| js_error("reader")(object.into()))?;
    let mut received = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(js_error("read"))?;
        let done = Reflect::get(&chunk, &JsValue::from_str("done"))
            .map_err(js_error("read"))?
            .is_truthy();
        if !done {
            let value =
                Reflect::get(&chunk, &JsValue::from_str("value")).map_err(js_error("read"))?;
            received.extend(
                value
                    .dyn_into::<Uint8Array>()
                    .map_err(js_error("read"))?
                    .to_vec(),
            );
        }
        match parse_response(&received, done).map_err(|e| SocketError(e.to_string()))? {
            Progress::Complete(response) => return Ok(response),
            // `parse_response` with `done` either completes or fails, so this loop ends.
            Progress::Incomplete => {}
        }
    }
}
