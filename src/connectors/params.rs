//! Bound parameters: one Arrow row turned into plain values any connector binds.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::ConnectorError;

/// A parameter value, independent of the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    /// Without time zone; a zoned Arrow timestamp is converted to UTC.
    Timestamp(NaiveDateTime),
}

/// Converts the single row of `batch` into parameters, in column order.
pub fn from_batch(batch: Option<&RecordBatch>) -> Result<Vec<Param>, ConnectorError> {
    let Some(batch) = batch else {
        return Ok(Vec::new());
    };
    if batch.num_rows() != 1 {
        return Err(ConnectorError::Params(format!(
            "expected one row of parameters, got {}; bind one row per execution",
            batch.num_rows()
        )));
    }
    batch.columns().iter().map(|c| value(c.as_ref())).collect()
}

fn value(a: &dyn Array) -> Result<Param, ConnectorError> {
    if a.is_null(0) {
        return Ok(Param::Null);
    }
    Ok(match a.data_type() {
        DataType::Null => Param::Null,
        DataType::Boolean => Param::Bool(a.as_boolean().value(0)),
        DataType::Int8 => Param::Int(a.as_primitive::<Int8Type>().value(0).into()),
        DataType::Int16 => Param::Int(a.as_primitive::<Int16Type>().value(0).into()),
        DataType::Int32 => Param::Int(a.as_primitive::<Int32Type>().value(0).into()),
        DataType::Int64 => Param::Int(a.as_primitive::<Int64Type>().value(0)),
        DataType::UInt8 => Param::Int(a.as_primitive::<UInt8Type>().value(0).into()),
        DataType::UInt16 => Param::Int(a.as_primitive::<UInt16Type>().value(0).into()),
        DataType::UInt32 => Param::Int(a.as_primitive::<UInt32Type>().value(0).into()),
        DataType::UInt64 => {
            let v = a.as_primitive::<UInt64Type>().value(0);
            Param::Int(i64::try_from(v).map_err(|_| {
                ConnectorError::Params(format!(
                    "unsigned value {v} does not fit in a 64-bit integer"
                ))
            })?)
        }
        DataType::Float32 => Param::Float(a.as_primitive::<Float32Type>().value(0).into()),
        DataType::Float64 => Param::Float(a.as_primitive::<Float64Type>().value(0)),
        DataType::Utf8 => Param::Text(a.as_string::<i32>().value(0).to_string()),
        DataType::LargeUtf8 => Param::Text(a.as_string::<i64>().value(0).to_string()),
        DataType::Utf8View => Param::Text(a.as_string_view().value(0).to_string()),
        DataType::Binary => Param::Bytes(a.as_binary::<i32>().value(0).to_vec()),
        DataType::LargeBinary => Param::Bytes(a.as_binary::<i64>().value(0).to_vec()),
        DataType::Date32 => {
            let days = a.as_primitive::<Date32Type>().value(0);
            Param::Date(
                NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                    .ok_or_else(|| ConnectorError::Params(format!("date out of range: {days}")))?,
            )
        }
        DataType::Timestamp(unit, _) => {
            let micros = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(0) * 1_000_000,
                TimeUnit::Millisecond => {
                    a.as_primitive::<TimestampMillisecondType>().value(0) * 1_000
                }
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(0),
                TimeUnit::Nanosecond => {
                    a.as_primitive::<TimestampNanosecondType>().value(0) / 1_000
                }
            };
            Param::Timestamp(
                DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| {
                        ConnectorError::Params(format!("timestamp out of range: {micros}"))
                    })?
                    .naive_utc(),
            )
        }
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => {
            Param::Text(arrow::util::display::array_value_to_string(a, 0)?)
        }
        other => {
            return Err(ConnectorError::Params(format!(
                "parameters of Arrow type {other} are not supported; cast it to a string, number or date"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn one_row_only() {
        let b = RecordBatch::try_from_iter([
            ("a", Arc::new(Int32Array::from(vec![Some(5)])) as _),
            ("b", Arc::new(StringArray::from(vec![None::<&str>])) as _),
        ])
        .unwrap();
        assert_eq!(
            from_batch(Some(&b)).unwrap(),
            vec![Param::Int(5), Param::Null]
        );
        let two = RecordBatch::try_from_iter([("a", Arc::new(Int32Array::from(vec![1, 2])) as _)])
            .unwrap();
        assert!(from_batch(Some(&two)).is_err());
        assert!(from_batch(None).unwrap().is_empty());
    }
}
