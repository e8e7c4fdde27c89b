//! Decoding PostgreSQL's binary wire format straight into Arrow builders,
//! without an intermediate value per cell.

use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, IntervalMonthDayNanoBuilder, ListArray, NullBuilder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{FieldRef, IntervalMonthDayNano};
use tokio_postgres::types::{FromSql, Type};

use super::types::{ColType, Scalar};

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The raw bytes of a value in any type.
pub struct Raw<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

/// Converts PostgreSQL's binary numeric to an i128 with `scale` decimals.
pub fn numeric_to_i128(raw: &[u8], scale: i8) -> Result<i128, String> {
    if raw.len() < 8 {
        return Err("truncated numeric".into());
    }
    let ndigits = i16::from_be_bytes([raw[0], raw[1]]) as i32;
    let weight = i16::from_be_bytes([raw[2], raw[3]]) as i32;
    let sign = u16::from_be_bytes([raw[4], raw[5]]);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => {
            return Err(
                "NaN cannot be represented as a decimal; filter it or cast to float8".into(),
            );
        }
        _ => {
            return Err(
                "infinity cannot be represented as a decimal; filter it or cast to float8".into(),
            );
        }
    }
    if raw.len() != 8 + 2 * ndigits.max(0) as usize {
        return Err("malformed numeric".into());
    }
    let overflow = || "value does not fit in decimal128(38); cast it in SQL".to_string();
    let mut acc: i128 = 0;
    for i in 0..ndigits as usize {
        let d = i16::from_be_bytes([raw[8 + 2 * i], raw[9 + 2 * i]]) as i128;
        acc = acc
            .checked_mul(10_000)
            .and_then(|a| a.checked_add(d))
            .ok_or_else(overflow)?;
    }
    // acc * 10000^(weight - ndigits + 1) * 10^scale
    let exp10 = 4 * (weight - ndigits + 1) + scale as i32;
    let value = if exp10 >= 0 {
        10i128
            .checked_pow(exp10 as u32)
            .and_then(|p| acc.checked_mul(p))
            .ok_or_else(overflow)?
    } else {
        let div = 10i128.checked_pow((-exp10) as u32);
        match div {
            None => 0,
            Some(div) => {
                let (q, r) = (acc / div, acc % div);
                if r * 2 >= div { q + 1 } else { q }
            }
        }
    };
    Ok(if sign == 0x4000 { -value } else { value })
}

/// A builder for one column of scalars.
pub enum Builder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Oid(UInt32Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder, i8, u8),
    Text(StringBuilder, bool),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder, bool),
    Interval(IntervalMonthDayNanoBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Null(NullBuilder),
}

impl Builder {
    fn new(s: Scalar, cap: usize) -> Builder {
        match s {
            Scalar::Bool => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            Scalar::I16 => Builder::I16(Int16Builder::with_capacity(cap)),
            Scalar::I32 => Builder::I32(Int32Builder::with_capacity(cap)),
            Scalar::I64 => Builder::I64(Int64Builder::with_capacity(cap)),
            Scalar::Oid => Builder::Oid(UInt32Builder::with_capacity(cap)),
            Scalar::F32 => Builder::F32(Float32Builder::with_capacity(cap)),
            Scalar::F64 => Builder::F64(Float64Builder::with_capacity(cap)),
            Scalar::Numeric { precision, scale } => {
                Builder::Decimal(Decimal128Builder::with_capacity(cap), scale, precision)
            }
            Scalar::Text | Scalar::Json => {
                Builder::Text(StringBuilder::with_capacity(cap, cap * 16), false)
            }
            Scalar::Jsonb => Builder::Text(StringBuilder::with_capacity(cap, cap * 16), true),
            Scalar::Bytea => Builder::Binary(BinaryBuilder::with_capacity(cap, cap * 16)),
            Scalar::Date => Builder::Date(Date32Builder::with_capacity(cap)),
            Scalar::Time => Builder::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            Scalar::Timestamp => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap), false)
            }
            Scalar::TimestampTz => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap), true)
            }
            Scalar::Interval => Builder::Interval(IntervalMonthDayNanoBuilder::with_capacity(cap)),
            Scalar::Uuid => Builder::Uuid(FixedSizeBinaryBuilder::with_capacity(cap, 16)),
            Scalar::Void => Builder::Null(NullBuilder::new()),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::Oid(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Decimal(b, ..) => b.append_null(),
            Builder::Text(b, _) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Timestamp(b, _) => b.append_null(),
            Builder::Interval(b) => b.append_null(),
            Builder::Uuid(b) => b.append_null(),
            Builder::Null(b) => b.append_null(),
        }
    }

    fn append(&mut self, raw: &[u8]) -> Result<(), String> {
        match self {
            Builder::Bool(b) => b.append_value(be::<1>(raw)?[0] != 0),
            Builder::I16(b) => b.append_value(i16::from_be_bytes(be(raw)?)),
            Builder::I32(b) => b.append_value(i32::from_be_bytes(be(raw)?)),
            Builder::I64(b) => b.append_value(i64::from_be_bytes(be(raw)?)),
            Builder::Oid(b) => b.append_value(u32::from_be_bytes(be(raw)?)),
            Builder::F32(b) => b.append_value(f32::from_be_bytes(be(raw)?)),
            Builder::F64(b) => b.append_value(f64::from_be_bytes(be(raw)?)),
            Builder::Decimal(b, scale, _) => b.append_value(numeric_to_i128(raw, *scale)?),
            Builder::Text(b, jsonb) => {
                let bytes = if *jsonb {
                    match raw.split_first() {
                        Some((1, rest)) => rest,
                        _ => return Err("unknown jsonb format version".into()),
                    }
                } else {
                    raw
                };
                b.append_value(std::str::from_utf8(bytes).map_err(|e| e.to_string())?)
            }
            Builder::Binary(b) => b.append_value(raw),
            Builder::Date(b) => {
                b.append_value(i32::from_be_bytes(be(raw)?).saturating_add(PG_EPOCH_DAYS))
            }
            Builder::Time(b) => b.append_value(i64::from_be_bytes(be(raw)?)),
            Builder::Timestamp(b, _) => {
                b.append_value(i64::from_be_bytes(be(raw)?).saturating_add(PG_EPOCH_MICROS))
            }
            Builder::Interval(b) => {
                let r: [u8; 16] = be(raw)?;
                let micros = i64::from_be_bytes(r[0..8].try_into().expect("8 bytes"));
                let days = i32::from_be_bytes(r[8..12].try_into().expect("4 bytes"));
                let months = i32::from_be_bytes(r[12..16].try_into().expect("4 bytes"));
                b.append_value(IntervalMonthDayNano::new(
                    months,
                    days,
                    micros.saturating_mul(1000),
                ))
            }
            Builder::Uuid(b) => b.append_value(raw).map_err(|e| e.to_string())?,
            Builder::Null(b) => b.append_null(),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::Oid(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Decimal(b, scale, precision) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("validated precision and scale"),
            ),
            Builder::Text(b, _) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Timestamp(b, tz) => {
                let a = b.finish();
                Arc::new(if *tz { a.with_timezone("UTC") } else { a })
            }
            Builder::Interval(b) => Arc::new(b.finish()),
            Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::Null(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Bool(b) => b.len(),
            Builder::I16(b) => b.len(),
            Builder::I32(b) => b.len(),
            Builder::I64(b) => b.len(),
            Builder::Oid(b) => b.len(),
            Builder::F32(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::Decimal(b, ..) => b.len(),
            Builder::Text(b, _) => b.len(),
            Builder::Binary(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Time(b) => b.len(),
            Builder::Timestamp(b, _) => b.len(),
            Builder::Interval(b) => b.len(),
            Builder::Uuid(b) => b.len(),
            Builder::Null(b) => b.len(),
        }
    }
}

/// A builder for one column of the result.
pub enum Column {
    Scalar(Builder),
    List {
        field: FieldRef,
        values: Builder,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
    },
}

impl Column {
    pub fn new(t: ColType, field: &arrow::datatypes::Field, cap: usize) -> Column {
        match t {
            ColType::Scalar(s) => Column::Scalar(Builder::new(s, cap)),
            ColType::List(s) => {
                let arrow::datatypes::DataType::List(inner) = field.data_type() else {
                    unreachable!("list columns have list fields")
                };
                let mut offsets = Vec::with_capacity(cap + 1);
                offsets.push(0);
                Column::List {
                    field: inner.clone(),
                    values: Builder::new(s, cap),
                    offsets,
                    nulls: NullBufferBuilder::new(cap),
                }
            }
        }
    }

    pub fn append(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        match (self, raw) {
            (Column::Scalar(b), None) => {
                b.append_null();
                Ok(())
            }
            (Column::Scalar(b), Some(r)) => b.append(r),
            (Column::List { offsets, nulls, .. }, None) => {
                offsets.push(*offsets.last().expect("offsets start at 0"));
                nulls.append_null();
                Ok(())
            }
            (
                Column::List {
                    values,
                    offsets,
                    nulls,
                    ..
                },
                Some(r),
            ) => {
                append_array(values, r)?;
                offsets.push(
                    i32::try_from(values.len())
                        .map_err(|_| "list values exceed 2^31".to_string())?,
                );
                nulls.append_non_null();
                Ok(())
            }
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Scalar(b) => b.finish(),
            Column::List {
                field,
                values,
                offsets,
                nulls,
            } => {
                let offs = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(
                    field.clone(),
                    offs,
                    values.finish(),
                    nulls.finish(),
                ))
            }
        }
    }
}

/// Appends the elements of a binary-format one-dimensional array.
fn append_array(values: &mut Builder, raw: &[u8]) -> Result<(), String> {
    let int = |at: usize| -> Result<i32, String> {
        raw.get(at..at + 4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| "truncated array".to_string())
    };
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok(());
    }
    if ndim != 1 {
        return Err(format!(
            "{ndim}-dimensional arrays are not supported; unnest them or cast to text"
        ));
    }
    let count = int(12)?;
    let mut at = 20;
    for _ in 0..count {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            values.append_null();
        } else {
            let end = at + len as usize;
            values.append(raw.get(at..end).ok_or("truncated array element")?)?;
            at = end;
        }
    }
    Ok(())
}

impl crate::connectors::ColumnBuilder for Column {
    fn finish(&mut self) -> ArrayRef {
        Column::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(ndigits.to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics() {
        // 12345.678 = [1, 2345, 6780] weight 1
        let n = numeric(3, 1, 0, 3, &[1, 2345, 6780]);
        assert_eq!(numeric_to_i128(&n, 3).unwrap(), 12_345_678);
        assert_eq!(numeric_to_i128(&n, 2).unwrap(), 1_234_568); // rounded
        assert_eq!(numeric_to_i128(&n, 0).unwrap(), 12_346);
        // -0.05 = [500] weight -1
        let n = numeric(1, -1, 0x4000, 2, &[500]);
        assert_eq!(numeric_to_i128(&n, 2).unwrap(), -5);
        // 0
        assert_eq!(numeric_to_i128(&numeric(0, 0, 0, 0, &[]), 10).unwrap(), 0);
        // 1e40 overflows
        let big = numeric(1, 10, 0, 0, &[1]);
        assert!(numeric_to_i128(&big, 0).is_err());
        assert!(numeric_to_i128(&numeric(0, 0, 0xC000, 0, &[]), 2).is_err());
        assert!(numeric_to_i128(&[0, 1], 2).is_err());
    }

    #[test]
    fn arrays() {
        let mut col = Column::new(
            ColType::List(Scalar::I32),
            &ColType::List(Scalar::I32).field("a"),
            4,
        );
        // [1, NULL]
        let mut raw = Vec::new();
        for x in [1i32, 1, 23, 2, 1] {
            raw.extend(x.to_be_bytes());
        }
        raw.extend(4i32.to_be_bytes());
        raw.extend(1i32.to_be_bytes());
        raw.extend((-1i32).to_be_bytes());
        col.append(Some(&raw)).unwrap();
        col.append(None).unwrap();
        let a = col.finish();
        assert_eq!(a.len(), 2);
        assert!(a.is_null(1));
        assert!(col.append(Some(&raw[..10])).is_err());
    }
}
