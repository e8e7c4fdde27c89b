//! PostgreSQL types and their Arrow counterparts.
//!
//! | PostgreSQL | Arrow |
//! |---|---|
//! | bool | bool |
//! | int2, int4, int8 | int16, int32, int64 |
//! | oid | uint32 |
//! | float4, float8 | float32, float64 |
//! | numeric(p,s), p <= 38 | decimal128(p,s) |
//! | numeric without typmod, or p > 38 | decimal128(38,10) (rounded half away from zero) |
//! | text, varchar, bpchar, name, "char", citext, xml, enums | utf8 |
//! | json, jsonb | utf8 (field metadata `ARROW:extension:name = arrow.json`) |
//! | bytea | binary |
//! | date | date32 |
//! | time | time64[us] |
//! | timestamp | timestamp[us] |
//! | timestamptz | timestamp[us, UTC] |
//! | interval | interval[month_day_nano] |
//! | uuid | fixed_size_binary(16) (`arrow.uuid`) |
//! | void | null |
//! | one-dimensional arrays of the above | list<...> |

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use tokio_postgres::types::{Kind, Type};

/// How a column's values are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Bool,
    I16,
    I32,
    I64,
    Oid,
    F32,
    F64,
    Numeric {
        precision: u8,
        scale: i8,
    },
    Text,
    Json,
    Jsonb,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    /// `void` (e.g. `SELECT pg_sleep(1)`): always NULL.
    Void,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Scalar(Scalar),
    List(Scalar),
}

/// Decimal used for numerics without a usable precision.
pub const DEFAULT_NUMERIC: Scalar = Scalar::Numeric {
    precision: 38,
    scale: 10,
};

fn numeric(typmod: i32) -> Scalar {
    if typmod < 4 {
        return DEFAULT_NUMERIC;
    }
    let m = typmod - 4;
    let precision = (m >> 16) & 0xffff;
    let scale = m & 0xffff;
    if precision == 0 || precision > 38 || scale > precision {
        return DEFAULT_NUMERIC;
    }
    Scalar::Numeric {
        precision: precision as u8,
        scale: scale as i8,
    }
}

fn scalar(ty: &Type, typmod: i32) -> Option<Scalar> {
    if let Kind::Enum(_) = ty.kind() {
        return Some(Scalar::Text);
    }
    if let Kind::Domain(inner) = ty.kind() {
        return scalar(inner, typmod);
    }
    Some(match *ty {
        Type::BOOL => Scalar::Bool,
        Type::INT2 => Scalar::I16,
        Type::INT4 => Scalar::I32,
        Type::INT8 => Scalar::I64,
        Type::OID => Scalar::Oid,
        Type::FLOAT4 => Scalar::F32,
        Type::FLOAT8 => Scalar::F64,
        Type::NUMERIC => numeric(typmod),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::CHAR
        | Type::XML
        | Type::UNKNOWN => Scalar::Text,
        Type::JSON => Scalar::Json,
        Type::JSONB => Scalar::Jsonb,
        Type::BYTEA => Scalar::Bytea,
        Type::DATE => Scalar::Date,
        Type::TIME => Scalar::Time,
        Type::TIMESTAMP => Scalar::Timestamp,
        Type::TIMESTAMPTZ => Scalar::TimestampTz,
        Type::INTERVAL => Scalar::Interval,
        Type::UUID => Scalar::Uuid,
        Type::VOID => Scalar::Void,
        _ if ty.name() == "citext" => Scalar::Text,
        _ => return None,
    })
}

/// The decoding of a column of type `ty`, or `None` when unsupported.
pub fn col_type(ty: &Type, typmod: i32) -> Option<ColType> {
    match ty.kind() {
        // An array column's typmod is its element's.
        Kind::Array(elem) => scalar(elem, typmod).map(ColType::List),
        _ => scalar(ty, typmod).map(ColType::Scalar),
    }
}

impl Scalar {
    pub fn data_type(self) -> DataType {
        match self {
            Scalar::Bool => DataType::Boolean,
            Scalar::I16 => DataType::Int16,
            Scalar::I32 => DataType::Int32,
            Scalar::I64 => DataType::Int64,
            Scalar::Oid => DataType::UInt32,
            Scalar::F32 => DataType::Float32,
            Scalar::F64 => DataType::Float64,
            Scalar::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            Scalar::Text | Scalar::Json | Scalar::Jsonb => DataType::Utf8,
            Scalar::Bytea => DataType::Binary,
            Scalar::Date => DataType::Date32,
            Scalar::Time => DataType::Time64(TimeUnit::Microsecond),
            Scalar::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Scalar::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Scalar::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Scalar::Uuid => DataType::FixedSizeBinary(16),
            Scalar::Void => DataType::Null,
        }
    }

    fn extension(self) -> Option<&'static str> {
        match self {
            Scalar::Json | Scalar::Jsonb => Some("arrow.json"),
            Scalar::Uuid => Some("arrow.uuid"),
            _ => None,
        }
    }

    pub fn field(self, name: &str) -> Field {
        let f = Field::new(name, self.data_type(), true);
        match self.extension() {
            Some(ext) => f.with_metadata(HashMap::from([(
                "ARROW:extension:name".to_string(),
                ext.to_string(),
            )])),
            None => f,
        }
    }
}

impl ColType {
    pub fn field(self, name: &str) -> Field {
        match self {
            ColType::Scalar(s) => s.field(name),
            ColType::List(s) => Field::new(name, DataType::List(Arc::new(s.field("item"))), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_typmods() {
        // numeric(15,2) has typmod ((15 << 16) | 2) + 4.
        assert_eq!(
            numeric((15 << 16 | 2) + 4),
            Scalar::Numeric {
                precision: 15,
                scale: 2
            }
        );
        assert_eq!(numeric(-1), DEFAULT_NUMERIC);
        assert_eq!(numeric((60 << 16 | 2) + 4), DEFAULT_NUMERIC);
        assert_eq!(
            col_type(&Type::INT4_ARRAY, -1),
            Some(ColType::List(Scalar::I32))
        );
        assert_eq!(col_type(&Type::POINT, -1), None);
    }
}
