//! `Range` requests on downloads (RFC 9110, single byte ranges): a client resumes a big file
//! or a player seeks in a video.

use crate::platform::Slice;

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranged {
    /// No header, or one we answer with the whole object (several ranges, other units, bad
    /// syntax: RFC 9110 lets a server ignore it).
    Whole,
    /// 206 with this slice.
    Part(Slice),
    /// 416: the range starts past the end.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| s.parse::<u64>().ok();
    let (offset, end) = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => return Ranged::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size),
            None => return Ranged::Whole,
        },
        // bytes=N-: from N to the end.
        (false, true) => match number(first) {
            Some(n) => (n, size),
            None => return Ranged::Whole,
        },
        (false, false) => match (number(first), number(last)) {
            // `b` may be u64::MAX: the end is past any object, not an overflow.
            (Some(a), Some(b)) if a <= b => (a, b.saturating_add(1).min(size)),
            _ => return Ranged::Whole,
        },
        (true, true) => return Ranged::Whole,
    };
    if offset >= size {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part(Slice {
        offset,
        length: end - offset,
    })
}

/// The `Content-Range` of a part.
pub fn content_range(slice: Slice, size: u64) -> String {
    format!(
        "bytes {}-{}/{size}",
        slice.offset,
        slice.offset + slice.length - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(offset: u64, length: u64) -> Ranged {
        Ranged::Part(Slice { offset, length })
    }

    #[test]
    fn single_ranges_are_sliced() {
        assert_eq!(parse(Some("bytes=0-9"), 100), part(0, 10));
        assert_eq!(parse(Some("bytes=90-"), 100), part(90, 10));
        assert_eq!(parse(Some("bytes=-5"), 100), part(95, 5));
        assert_eq!(parse(Some("bytes=50-1000"), 100), part(50, 50));
        assert_eq!(parse(Some("bytes=-500"), 100), part(0, 100));
        assert_eq!(
            content_range(
                Slice {
                    offset: 0,
                    length: 10
                },
                100
            ),
            "bytes 0-9/100"
        );
    }

    #[test]
    fn odd_ranges_get_the_whole_object_and_past_the_end_is_416() {
        assert_eq!(parse(None, 100), Ranged::Whole);
        assert_eq!(parse(Some("items=0-1"), 100), Ranged::Whole);
        assert_eq!(parse(Some("bytes=0-1,5-6"), 100), Ranged::Whole);
        assert_eq!(parse(Some("bytes=9-3"), 100), Ranged::Whole);
        assert_eq!(parse(Some("bytes=x-"), 100), Ranged::Whole);
        assert_eq!(parse(Some("bytes=100-"), 100), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), Ranged::Unsatisfiable);
    }

    /// Found by the media_range fuzz target (src/fuzz/media.rs): the last byte position
    /// u64::MAX overflowed (a panic natively; in the Worker's release build it wrapped to an
    /// empty slice whose `Content-Range` underflowed).
    #[test]
    fn the_largest_last_byte_position_means_to_the_end() {
        let max = u64::MAX;
        assert_eq!(parse(Some(&format!("bytes=0-{max}")), 100), part(0, 100));
        assert_eq!(
            parse(Some(&format!("bytes=0-{max}")), 0),
            Ranged::Unsatisfiable
        );
        assert_eq!(
            parse(Some(&format!("bytes={max}-{max}")), max),
            Ranged::Unsatisfiable
        );
    }
}
