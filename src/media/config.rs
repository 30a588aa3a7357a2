//! The media settings (`[vars]`), parsed once per request with the rest of the configuration.

use super::super::config::ConfigError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaConfig {
    /// `MAX_UPLOAD_BYTES`: the largest upload, advertised as `m.upload.size`; also the largest
    /// remote file fetched for our users.
    pub max_upload_bytes: u64,
    /// `MEDIA_QUOTA_BYTES`: what one user may store in all; `None` for no limit.
    pub quota_bytes_per_user: Option<u64>,
    /// `MAX_THUMBNAIL_PIXELS`: images with more pixels are not thumbnailed (413 `M_TOO_LARGE`),
    /// because decoding them costs CPU in proportion (docs/benchmarks.md has the figures).
    pub max_thumbnail_pixels: u64,
    /// `MEDIA_FREEZE_TS` (ms since the epoch): media stored before it is also served by the
    /// deprecated unauthenticated endpoints; media stored from then on only by the
    /// authenticated ones. 0 (the default): all media is frozen.
    pub freeze_ts: i64,
    /// `URL_PREVIEWS`: whether `preview_url` fetches pages (off by default, see the README).
    pub url_previews: bool,
    /// `URL_PREVIEW_ALLOW_PRIVATE`: lets previews reach loopback and private addresses. Only for
    /// tests, whose pages are served on 127.0.0.1.
    pub url_preview_allow_private: bool,
}

/// Synapse's default and the free plan's comfortable request size.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// A 4000x3000 camera picture is 12 megapixels; the default leaves room for 16.
pub const DEFAULT_MAX_THUMBNAIL_PIXELS: u64 = 16_000_000;

impl MediaConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |name: &'static str, min: u64| -> Result<Option<u64>, ConfigError> {
            get(name)
                .map(|raw| {
                    raw.parse::<u64>()
                        .ok()
                        .filter(|n| *n >= min)
                        .ok_or(ConfigError::Invalid(name, raw))
                })
                .transpose()
        };
        let flag = |name: &'static str| match get(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ConfigError::Invalid(name, other.to_owned())),
        };
        Ok(Self {
            max_upload_bytes: number("MAX_UPLOAD_BYTES", 1)?.unwrap_or(DEFAULT_MAX_UPLOAD_BYTES),
            quota_bytes_per_user: number("MEDIA_QUOTA_BYTES", 0)?.filter(|n| *n > 0),
            max_thumbnail_pixels: number("MAX_THUMBNAIL_PIXELS", 1)?
                .unwrap_or(DEFAULT_MAX_THUMBNAIL_PIXELS),
            freeze_ts: number("MEDIA_FREEZE_TS", 0)?.unwrap_or(0) as i64,
            url_previews: flag("URL_PREVIEWS")?,
            url_preview_allow_private: flag("URL_PREVIEW_ALLOW_PRIVATE")?,
        })
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self::from_lookup(|_| None).expect("the defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<MediaConfig, ConfigError> {
        MediaConfig::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_freeze_everything_and_preview_nothing() {
        let config = MediaConfig::default();
        assert_eq!(config.max_upload_bytes, DEFAULT_MAX_UPLOAD_BYTES);
        assert_eq!(config.quota_bytes_per_user, None);
        assert_eq!(config.freeze_ts, 0);
        assert!(!config.url_previews);
    }

    #[test]
    fn settings_are_read_and_bad_ones_refused() {
        let config = parse(&[("MAX_UPLOAD_BYTES", "1000"), ("MEDIA_QUOTA_BYTES", "5000")]).unwrap();
        assert_eq!(config.max_upload_bytes, 1000);
        assert_eq!(config.quota_bytes_per_user, Some(5000));
        assert!(parse(&[("MAX_UPLOAD_BYTES", "0")]).is_err());
        assert!(parse(&[("MAX_UPLOAD_BYTES", "lots")]).is_err());
        assert!(parse(&[("URL_PREVIEWS", "yes")]).is_err());
    }
}
