//! WebCrypto, for the slow and keyed hashes the runtime computes natively (PBKDF2, HMAC):
//! far cheaper in CPU time than the same work in wasm.

use worker::js_sys::{Array, Function, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

use crate::http::MatrixError;

fn js_error(what: &str) -> impl Fn(JsValue) -> MatrixError + '_ {
    move |e| MatrixError::internal(format!("WebCrypto {what} failed: {e:?}"))
}

fn subtle() -> Result<JsValue, MatrixError> {
    let crypto =
        Reflect::get(&worker::js_sys::global(), &"crypto".into()).map_err(js_error("lookup"))?;
    Reflect::get(&crypto, &"subtle".into()).map_err(js_error("lookup"))
}

async fn call(subtle: &JsValue, method: &str, args: &Array) -> Result<JsValue, MatrixError> {
    let function: Function = Reflect::get(subtle, &method.into())
        .map_err(js_error(method))?
        .dyn_into()
        .map_err(js_error(method))?;
    let promise = function.apply(subtle, args).map_err(js_error(method))?;
    JsFuture::from(worker::js_sys::Promise::from(promise))
        .await
        .map_err(js_error(method))
}

fn object(fields: &[(&str, JsValue)]) -> Result<Object, MatrixError> {
    let object = Object::new();
    for (name, value) in fields {
        Reflect::set(&object, &(*name).into(), value).map_err(js_error("params"))?;
    }
    Ok(object)
}

pub(crate) async fn pbkdf2_sha256(
    password: &str,
    salt: &[u8],
    iterations: u32,
    bytes: usize,
) -> Result<Vec<u8>, MatrixError> {
    let subtle = subtle()?;
    let usages = Array::of1(&"deriveBits".into());
    let key = call(
        &subtle,
        "importKey",
        &Array::of5(
            &"raw".into(),
            &Uint8Array::from(password.as_bytes()),
            &"PBKDF2".into(),
            &false.into(),
            &usages,
        ),
    )
    .await?;
    let params = object(&[
        ("name", "PBKDF2".into()),
        ("hash", "SHA-256".into()),
        ("salt", Uint8Array::from(salt).into()),
        ("iterations", (iterations as f64).into()),
    ])?;
    let bits = call(
        &subtle,
        "deriveBits",
        &Array::of3(&params, &key, &((bytes * 8) as f64).into()),
    )
    .await?;
    Ok(Uint8Array::new(&bits).to_vec())
}

pub(crate) async fn hmac_sha1(key: &[u8], message: &[u8]) -> Result<Vec<u8>, MatrixError> {
    let subtle = subtle()?;
    let algorithm = object(&[("name", "HMAC".into()), ("hash", "SHA-1".into())])?;
    let key = call(
        &subtle,
        "importKey",
        &Array::of5(
            &"raw".into(),
            &Uint8Array::from(key),
            &algorithm,
            &false.into(),
            &Array::of1(&"sign".into()),
        ),
    )
    .await?;
    let mac = call(
        &subtle,
        "sign",
        &Array::of3(&"HMAC".into(), &key, &Uint8Array::from(message)),
    )
    .await?;
    Ok(Uint8Array::new(&mac).to_vec())
}
