//! The NumPy `.npy` format, for float32 arrays: enough for `np.save` / `np.load`.

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A float32 array in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidInput(format!("not a float32 .npy array: {}", message.into()))
}

/// Reads a little-endian float32 (`<f4`), C-ordered array.
pub fn read_f32(bytes: &[u8]) -> Result<Array> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err(invalid("missing the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (header_len, header_start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(invalid(format!("unsupported format version {major}"))),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| invalid("the header is longer than the file"))?;
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| invalid("the header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| invalid("no 'descr' in the header"))?;
    if !matches!(
        descr.trim_matches(|c| c == '\'' || c == '"'),
        "<f4" | "float32"
    ) {
        return Err(invalid(format!(
            "dtype {descr}: save it as float32 (x.astype(np.float32))"
        )));
    }
    if dict_value(header, "fortran_order").is_some_and(|value| value.starts_with("True")) {
        return Err(invalid("Fortran order: save np.ascontiguousarray(x)"));
    }
    let shape_text =
        dict_value(header, "shape").ok_or_else(|| invalid("no 'shape' in the header"))?;
    let shape =
        parse_shape(shape_text).ok_or_else(|| invalid(format!("bad shape {shape_text}")))?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
        .ok_or_else(|| invalid("the shape overflows"))?;
    let payload = &bytes[data_start..];
    if count.checked_mul(4) != Some(payload.len()) {
        return Err(invalid(format!(
            "shape {shape:?} needs {count} floats but the file holds {} bytes of data",
            payload.len()
        )));
    }
    let data = payload
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().expect("4 bytes")))
        .collect();
    Ok(Array { shape, data })
}

/// Writes a float32 C-ordered array, version 1.0.
pub fn write_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // The header (with magic, version and length) is padded to a multiple of 64 and ends in \n.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in data {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// The raw text of `key`'s value in the header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find(',').unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.trim_end_matches('L').parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_rank() {
        for shape in [vec![3], vec![2, 3], vec![1, 2, 2, 2], vec![]] {
            let count: usize = shape.iter().product();
            let data: Vec<f32> = (0..count).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = write_f32(&shape, &data);
            assert_eq!(
                (bytes.len() - data.len() * 4) % 64,
                0,
                "header is 64-aligned"
            );
            assert_eq!(read_f32(&bytes).unwrap(), Array { shape, data });
        }
    }

    #[test]
    fn rejects_wrong_dtype_and_truncation() {
        let mut bytes = write_f32(&[4], &[1.0, 2.0, 3.0, 4.0]);
        bytes.truncate(bytes.len() - 1);
        assert!(
            read_f32(&bytes)
                .unwrap_err()
                .to_string()
                .contains("needs 4 floats")
        );
        let float64 = write_f32(&[1], &[0.0]);
        let text = String::from_utf8_lossy(&float64).replace("<f4", "<f8");
        assert!(
            read_f32(text.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("float32")
        );
        assert!(read_f32(b"hello").is_err());
    }
}
