//! The byte-level codec of the store's file format: LEB128 varints and little-endian
//! fixed-width integers, with reads that report a short or malformed input instead of
//! panicking.

/// Appends `value` as an unsigned LEB128 varint (the same encoding postcard uses for
/// lengths, so a count written here reads back as a postcard sequence length).
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint at `*position`, advancing it; `None` if the bytes end first or the
/// varint is longer than a `u64` allows.
pub fn get_varint(bytes: &[u8], position: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*position)?;
        *position += 1;
        let low = u64::from(byte & 0x7f);
        if shift == 63 && low > 1 {
            return None;
        }
        value |= low << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn get_u32(bytes: &[u8], position: &mut usize) -> Option<u32> {
    let end = position.checked_add(4)?;
    let value = u32::from_le_bytes(bytes.get(*position..end)?.try_into().ok()?);
    *position = end;
    Some(value)
}

pub fn get_u64(bytes: &[u8], position: &mut usize) -> Option<u64> {
    let end = position.checked_add(8)?;
    let value = u64::from_le_bytes(bytes.get(*position..end)?.try_into().ok()?);
    *position = end;
    Some(value)
}

/// Reads a varint length and that many bytes after it.
pub fn get_length_prefixed<'a>(bytes: &'a [u8], position: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(get_varint(bytes, position)?).ok()?;
    let end = position.checked_add(len)?;
    let slice = bytes.get(*position..end)?;
    *position = end;
    Some(slice)
}

pub fn put_length_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_varint_reads_back_and_matches_postcards_length_encoding(value in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            let mut position = 0;
            prop_assert_eq!(get_varint(&out, &mut position), Some(value));
            prop_assert_eq!(position, out.len());
            // postcard writes a `usize` (and a sequence length) as this same varint.
            if let Ok(value) = usize::try_from(value) {
                prop_assert_eq!(postcard::to_stdvec(&value).unwrap(), out);
            }
        }
    }

    #[test]
    fn truncated_or_overlong_input_is_none_not_a_panic() {
        let mut position = 0;
        assert_eq!(get_varint(&[0x80, 0x80], &mut position), None);
        let mut position = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut position), None);
        let mut position = 0;
        assert_eq!(get_u64(&[1, 2, 3], &mut position), None);
        let mut position = 0;
        assert_eq!(get_length_prefixed(&[5, 1, 2], &mut position), None);
    }
}
