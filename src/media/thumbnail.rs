//! Thumbnails (spec: client-server "Thumbnails"): which size to make for a request, and making
//! it. Image work is pure Rust (the `image` crate) so it runs in wasm; its cost grows with the
//! source's pixels, so sources above a pixel budget are refused before they are decoded.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Crop,
    Scale,
}

impl Method {
    /// The query's `method`; the spec's default is not stated, Synapse's is `scale`.
    pub fn parse(raw: Option<&str>) -> Option<Method> {
        match raw {
            None | Some("scale") => Some(Method::Scale),
            Some("crop") => Some(Method::Crop),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crop => "crop",
            Method::Scale => "scale",
        }
    }
}

/// The sizes the spec says servers should produce. Every request maps to one of them, so a
/// picture has at most five thumbnails, each made once.
pub const SIZES: [(u32, u32, Method); 5] = [
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// The size to answer a request for `width`x`height` with: the smallest of the method's sizes
/// that is at least as big as asked (never a smaller one, as the spec requires), or the
/// method's largest when the request is bigger than all of them.
pub fn choose(width: u32, height: u32, method: Method) -> (u32, u32) {
    let sizes = SIZES.iter().filter(|(_, _, m)| *m == method);
    sizes
        .clone()
        .filter(|(w, h, _)| *w >= width && *h >= height)
        .min_by_key(|(w, h, _)| w * h)
        .or_else(|| sizes.max_by_key(|(w, h, _)| w * h))
        .map(|(w, h, _)| (*w, *h))
        .expect("every method has sizes")
}

/// The formats thumbnailed: the ones the spec names for thumbnails, as uploaded.
pub fn format_of(content_type: &str) -> Option<ImageFormat> {
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "image/jpeg" | "image/jpg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Thumbnail {
    /// The source is no bigger than the size asked: serve it as it is (the spec says to
    /// return the original, and never to upscale).
    Original,
    Made {
        bytes: Vec<u8>,
        content_type: &'static str,
        width: u32,
        height: u32,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum ThumbnailError {
    /// Not an image we thumbnail, or not decodable.
    Unsupported(String),
    /// More pixels than the budget: 413 `M_TOO_LARGE`.
    TooLarge { pixels: u64 },
}

/// Makes the thumbnail of `bytes` (of `format`) at `size` with `method`, refusing sources of
/// more than `max_pixels` before decoding them.
pub fn make(
    bytes: &[u8],
    format: ImageFormat,
    size: (u32, u32),
    method: Method,
    max_pixels: u64,
) -> Result<Thumbnail, ThumbnailError> {
    let unsupported = |e: image::ImageError| ThumbnailError::Unsupported(e.to_string());
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(unsupported)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ThumbnailError::TooLarge { pixels });
    }
    let (target_w, target_h) = size;
    if width <= target_w && height <= target_h {
        return Ok(Thumbnail::Original);
    }
    // The size the thumbnail is cut from: the image scaled (aspect kept) to fit the size, or to
    // cover it for a crop.
    let needed = match method {
        Method::Scale => fit((width, height), size),
        Method::Crop => cover((width, height), (target_w.min(width), target_h.min(height))),
    };
    let image = match format {
        ImageFormat::Jpeg => decode_jpeg_scaled(bytes, needed)?,
        _ => {
            let mut reader = reader();
            // A header that lies about its size cannot make the decoder allocate more than the
            // budget.
            let mut limits = Limits::default();
            limits.max_alloc = Some(max_pixels.saturating_mul(8));
            reader.limits(limits);
            reader.decode().map_err(unsupported)?
        }
    };
    let thumbnail = match method {
        Method::Scale => image.thumbnail(target_w, target_h),
        Method::Crop => crop(&image, target_w.min(width), target_h.min(height)),
    };
    encode(thumbnail, format)
}

/// `(w, h)` scaled, aspect kept, to fit inside `(width, height)`.
fn fit((w, h): (u32, u32), (width, height): (u32, u32)) -> (u32, u32) {
    let (w, h) = (u64::from(w), u64::from(h));
    if w * u64::from(height) > h * u64::from(width) {
        (width, ((h * u64::from(width)) / w).max(1) as u32)
    } else {
        (((w * u64::from(height)) / h).max(1) as u32, height)
    }
}

/// `(w, h)` scaled, aspect kept, to cover `(width, height)`: the side that is relatively shorter
/// reaches the target exactly.
fn cover((w, h): (u32, u32), (width, height): (u32, u32)) -> (u32, u32) {
    let (w, h) = (u64::from(w), u64::from(h));
    if w * u64::from(height) > h * u64::from(width) {
        ((w * u64::from(height)).div_ceil(h) as u32, height)
    } else {
        (width, (h * u64::from(width)).div_ceil(w) as u32)
    }
}

/// A JPEG decoded at the smallest of the DCT's scales (1/8, 1/4, 1/2, 1) that is still at least
/// `needed`: a 12-megapixel photo for a 320x240 thumbnail is decoded at 500x375, so most of
/// its pixels are never computed.
fn decode_jpeg_scaled(bytes: &[u8], needed: (u32, u32)) -> Result<DynamicImage, ThumbnailError> {
    use jpeg_decoder::{Decoder, PixelFormat};
    let failed = |e: jpeg_decoder::Error| ThumbnailError::Unsupported(e.to_string());
    let mut decoder = Decoder::new(Cursor::new(bytes));
    let clamp = |n: u32| n.min(u32::from(u16::MAX)) as u16;
    let (width, height) = decoder
        .scale(clamp(needed.0), clamp(needed.1))
        .map_err(failed)?;
    let pixels = decoder.decode().map_err(failed)?;
    let format = decoder.info().map(|info| info.pixel_format);
    let (width, height) = (u32::from(width), u32::from(height));
    let short = || ThumbnailError::Unsupported("the JPEG's pixels are incomplete".into());
    Ok(match format {
        Some(PixelFormat::RGB24) => DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(width, height, pixels).ok_or_else(short)?,
        ),
        Some(PixelFormat::L8) => DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(width, height, pixels).ok_or_else(short)?,
        ),
        Some(PixelFormat::L16) => {
            let wide = pixels
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            DynamicImage::ImageLuma16(
                image::ImageBuffer::from_raw(width, height, wide).ok_or_else(short)?,
            )
        }
        Some(PixelFormat::CMYK32) => {
            // Adobe's CMYK JPEGs store the inks inverted: white is 255 in every channel.
            let rgb = pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = u16::from(p[3]);
                    [0, 1, 2].map(|i| (u16::from(p[i]) * k / 255) as u8)
                })
                .collect();
            DynamicImage::ImageRgb8(
                image::RgbImage::from_raw(width, height, rgb).ok_or_else(short)?,
            )
        }
        None => return Err(short()),
    })
}

/// Scales `image` down until it covers `width`x`height`, then cuts the middle out.
fn crop(image: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    let (cover_w, cover_h) = cover((image.width(), image.height()), (width, height));
    let scaled = image.thumbnail_exact(cover_w.max(width), cover_h.max(height));
    let x = (scaled.width() - width) / 2;
    let y = (scaled.height() - height) / 2;
    scaled.crop_imm(x, y, width, height)
}

/// JPEG stays JPEG (photos); everything else becomes PNG (keeps transparency; a GIF's first
/// frame, as `animated` is not offered).
fn encode(image: DynamicImage, source: ImageFormat) -> Result<Thumbnail, ThumbnailError> {
    let (width, height) = (image.width(), image.height());
    let mut bytes = Vec::new();
    let failed = |e: image::ImageError| ThumbnailError::Unsupported(e.to_string());
    let content_type = if source == ImageFormat::Jpeg {
        let encoder = JpegEncoder::new_with_quality(&mut bytes, 80);
        image
            .to_rgb8()
            .write_with_encoder(encoder)
            .map_err(failed)?;
        "image/jpeg"
    } else {
        let encoder = PngEncoder::new(&mut bytes);
        image
            .to_rgba8()
            .write_with_encoder(encoder)
            .map_err(failed)?;
        "image/png"
    };
    Ok(Thumbnail::Made {
        bytes,
        content_type,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbaImage::from_fn(width, height, |x, y| Rgba([x as u8, y as u8, 0, 255]));
        let mut bytes = Vec::new();
        image
            .write_with_encoder(PngEncoder::new(&mut bytes))
            .unwrap();
        bytes
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 128]));
        let mut bytes = Vec::new();
        image
            .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, 90))
            .unwrap();
        bytes
    }

    #[test]
    fn a_big_jpeg_is_decoded_at_a_reduced_scale_and_still_fits() {
        let made = make(
            &jpeg(1600, 1200),
            ImageFormat::Jpeg,
            (320, 240),
            Method::Scale,
            1 << 30,
        );
        let Ok(Thumbnail::Made {
            bytes,
            width,
            height,
            ..
        }) = made
        else {
            panic!("{made:?}");
        };
        assert_eq!((width, height), (320, 240));
        assert_eq!(dimensions(&bytes), (320, 240));
        let image = decode_jpeg_scaled(&jpeg(1600, 1200), (320, 240)).unwrap();
        // 1/4 is the smallest scale still at least 320 wide: 400x300.
        assert_eq!((image.width(), image.height()), (400, 300));
    }

    fn dimensions(bytes: &[u8]) -> (u32, u32) {
        let image = image::load_from_memory(bytes).unwrap();
        (image.width(), image.height())
    }

    #[test]
    fn a_request_gets_the_smallest_size_at_least_as_big() {
        assert_eq!(choose(32, 32, Method::Crop), (32, 32));
        assert_eq!(choose(33, 10, Method::Crop), (96, 96));
        assert_eq!(choose(100, 100, Method::Scale), (320, 240));
        assert_eq!(choose(320, 241, Method::Scale), (640, 480));
        assert_eq!(choose(2000, 2000, Method::Scale), (800, 600));
        assert_eq!(choose(2000, 2000, Method::Crop), (96, 96));
    }

    #[test]
    fn scale_keeps_the_aspect_and_fits_the_size() {
        let made = make(
            &png(1000, 500),
            ImageFormat::Png,
            (320, 240),
            Method::Scale,
            1 << 30,
        );
        let Ok(Thumbnail::Made {
            bytes,
            content_type,
            width,
            height,
        }) = made
        else {
            panic!("{made:?}");
        };
        assert_eq!(content_type, "image/png");
        assert_eq!((width, height), (320, 160));
        assert_eq!(dimensions(&bytes), (320, 160));
    }

    #[test]
    fn crop_has_exactly_the_size_asked() {
        let made = make(
            &jpeg(400, 300),
            ImageFormat::Jpeg,
            (96, 96),
            Method::Crop,
            1 << 30,
        );
        let Ok(Thumbnail::Made {
            bytes,
            content_type,
            ..
        }) = made
        else {
            panic!("{made:?}");
        };
        assert_eq!(content_type, "image/jpeg");
        assert_eq!(dimensions(&bytes), (96, 96));
    }

    #[test]
    fn webp_and_gif_sources_are_thumbnailed_as_png() {
        let picture = RgbaImage::from_fn(300, 200, |x, y| Rgba([x as u8, y as u8, 9, 255]));
        let mut webp = Vec::new();
        picture
            .write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut webp))
            .unwrap();
        let mut gif = Vec::new();
        picture
            .write_with_encoder(image::codecs::gif::GifEncoder::new(&mut gif))
            .unwrap();
        for (bytes, format) in [(webp, ImageFormat::WebP), (gif, ImageFormat::Gif)] {
            let made = make(&bytes, format, (96, 96), Method::Crop, 1 << 30);
            let Ok(Thumbnail::Made {
                bytes,
                content_type,
                ..
            }) = made
            else {
                panic!("{format:?}: {made:?}");
            };
            assert_eq!(content_type, "image/png");
            assert_eq!(dimensions(&bytes), (96, 96), "{format:?}");
        }
    }

    #[test]
    fn small_sources_are_served_as_they_are() {
        let made = make(
            &png(20, 20),
            ImageFormat::Png,
            (32, 32),
            Method::Crop,
            1 << 30,
        );
        assert_eq!(made, Ok(Thumbnail::Original));
    }

    #[test]
    fn sources_over_the_budget_are_refused_before_decoding() {
        let made = make(
            &png(100, 100),
            ImageFormat::Png,
            (32, 32),
            Method::Crop,
            9_999,
        );
        assert_eq!(made, Err(ThumbnailError::TooLarge { pixels: 10_000 }));
    }

    #[test]
    fn garbage_is_unsupported_not_a_panic() {
        let made = make(
            b"not an image",
            ImageFormat::Png,
            (32, 32),
            Method::Crop,
            1 << 30,
        );
        assert!(matches!(made, Err(ThumbnailError::Unsupported(_))));
        let truncated = &png(200, 200)[..100];
        let made = make(truncated, ImageFormat::Png, (32, 32), Method::Crop, 1 << 30);
        assert!(matches!(made, Err(ThumbnailError::Unsupported(_))));
    }
}
