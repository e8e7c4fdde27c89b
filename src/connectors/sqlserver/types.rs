//! SQL Server column types and the Arrow type each becomes.
//!
//! | SQL Server | Arrow |
//! |---|---|
//! | bit | bool |
//! | tinyint | uint8 (SQL Server's tinyint is unsigned) |
//! | smallint, int, bigint | int16, int32, int64 |
//! | real, float | float32, float64 |
//! | decimal(p,s), numeric(p,s) | decimal128(p,s) |
//! | money, smallmoney | decimal128(19,4), decimal128(10,4) |
//! | date | date32 |
//! | time(n) | time64[ns] (all seven digits kept) |
//! | datetime, smalldatetime | timestamp[us] (datetime's 1/300 s ticks rounded to ms, as SQL Server shows them) |
//! | datetime2(n) | timestamp[us] (the 7th digit, 100 ns, is dropped so 0001-9999 fits) |
//! | datetimeoffset(n) | timestamp[us, UTC] (the instant; the offset is not kept) |
//! | char, varchar, text, nchar, nvarchar, ntext (incl. max), xml, sql_variant | utf8 |
//! | binary, varbinary (incl. max), image, rowversion, CLR types (geography, geometry, hierarchyid) | binary |
//! | uniqueidentifier | fixed_size_binary(16) (`arrow.uuid`) |

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field, TimeUnit};
use tiberius::ColumnType;

/// What a result column decodes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Money,
    SmallMoney,
    Date,
    Time,
    DateTime,
    SmallDateTime,
    DateTime2,
    DateTimeOffset,
    /// Character data of every kind, xml and sql_variant.
    Text,
    Binary,
    Guid,
}

impl SqlType {
    pub fn data_type(&self) -> DataType {
        match self {
            SqlType::Bit => DataType::Boolean,
            SqlType::TinyInt => DataType::UInt8,
            SqlType::SmallInt => DataType::Int16,
            SqlType::Int => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Real => DataType::Float32,
            SqlType::Float => DataType::Float64,
            SqlType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            SqlType::Money => DataType::Decimal128(19, 4),
            SqlType::SmallMoney => DataType::Decimal128(10, 4),
            SqlType::Date => DataType::Date32,
            SqlType::Time => DataType::Time64(TimeUnit::Nanosecond),
            SqlType::DateTime | SqlType::SmallDateTime | SqlType::DateTime2 => {
                DataType::Timestamp(TimeUnit::Microsecond, None)
            }
            SqlType::DateTimeOffset => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            SqlType::Text => DataType::Utf8,
            SqlType::Binary => DataType::Binary,
            SqlType::Guid => DataType::FixedSizeBinary(16),
        }
    }

    pub fn field(&self, name: &str) -> Field {
        let f = Field::new(name, self.data_type(), true);
        if *self == SqlType::Guid {
            f.with_metadata(HashMap::from([(
                "ARROW:extension:name".to_string(),
                "arrow.uuid".to_string(),
            )]))
        } else {
            f
        }
    }

    /// The scale values of this column are brought to, for decimals.
    pub fn scale(&self) -> i8 {
        match self {
            SqlType::Decimal { scale, .. } => *scale,
            SqlType::Money | SqlType::SmallMoney => 4,
            _ => 0,
        }
    }
}

/// The type from a system type name, as `sp_describe_first_result_set` and
/// `sys.types` report it (`decimal(18,2)`, `nvarchar(max)`, `datetime2(7)`),
/// with the precision and scale the server reports alongside.
pub fn from_type_name(name: &str, precision: u8, scale: u8) -> SqlType {
    let base = name
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "bit" => SqlType::Bit,
        "tinyint" => SqlType::TinyInt,
        "smallint" => SqlType::SmallInt,
        "int" => SqlType::Int,
        "bigint" => SqlType::BigInt,
        "real" => SqlType::Real,
        // float(1..24) is stored as real; the server reports those as `real`.
        "float" => SqlType::Float,
        "decimal" | "numeric" => SqlType::Decimal {
            precision: precision.clamp(1, 38),
            scale: scale.min(precision.clamp(1, 38)) as i8,
        },
        "money" => SqlType::Money,
        "smallmoney" => SqlType::SmallMoney,
        "date" => SqlType::Date,
        "time" => SqlType::Time,
        "datetime" => SqlType::DateTime,
        "smalldatetime" => SqlType::SmallDateTime,
        "datetime2" => SqlType::DateTime2,
        "datetimeoffset" => SqlType::DateTimeOffset,
        "uniqueidentifier" => SqlType::Guid,
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" | "geography"
        | "geometry" | "hierarchyid" => SqlType::Binary,
        // char, varchar, text, nchar, nvarchar, ntext, sysname, xml,
        // sql_variant, and anything newer: text is always readable.
        _ => SqlType::Text,
    }
}

/// The type from the result's own metadata, when the server cannot describe
/// the statement beforehand (temporary tables, dynamic SQL). tiberius does
/// not pass on a decimal's precision and scale there, so decimals widen to
/// `decimal(38,18)` (a value with more decimal places is an error naming the
/// column); an integer of unknown width becomes `bigint`.
pub fn from_column_type(t: ColumnType) -> SqlType {
    match t {
        ColumnType::Bit | ColumnType::Bitn => SqlType::Bit,
        ColumnType::Int1 => SqlType::TinyInt,
        ColumnType::Int2 => SqlType::SmallInt,
        ColumnType::Int4 => SqlType::Int,
        ColumnType::Int8 | ColumnType::Intn => SqlType::BigInt,
        ColumnType::Float4 => SqlType::Real,
        ColumnType::Float8 | ColumnType::Floatn => SqlType::Float,
        ColumnType::Money => SqlType::Money,
        ColumnType::Money4 => SqlType::SmallMoney,
        ColumnType::Decimaln | ColumnType::Numericn => SqlType::Decimal {
            precision: 38,
            scale: FALLBACK_SCALE,
        },
        ColumnType::Datetime | ColumnType::Datetimen => SqlType::DateTime,
        ColumnType::Datetime4 => SqlType::SmallDateTime,
        ColumnType::Daten => SqlType::Date,
        ColumnType::Timen => SqlType::Time,
        ColumnType::Datetime2 => SqlType::DateTime2,
        ColumnType::DatetimeOffsetn => SqlType::DateTimeOffset,
        ColumnType::Guid => SqlType::Guid,
        ColumnType::BigVarBin | ColumnType::BigBinary | ColumnType::Image | ColumnType::Udt => {
            SqlType::Binary
        }
        ColumnType::Null
        | ColumnType::BigVarChar
        | ColumnType::BigChar
        | ColumnType::NVarchar
        | ColumnType::NChar
        | ColumnType::Xml
        | ColumnType::Text
        | ColumnType::NText
        | ColumnType::SSVariant => SqlType::Text,
    }
}

/// Scale of a decimal whose declared scale is unknown (see [`from_column_type`]).
pub const FALLBACK_SCALE: i8 = 18;

/// The SQL Server type a bound parameter is declared as.
pub fn param_decl(p: &super::super::params::Param) -> &'static str {
    use super::super::params::Param;
    match p {
        Param::Null => "int",
        Param::Bool(_) => "bit",
        Param::Int(_) => "bigint",
        Param::Float(_) => "float",
        Param::Text(_) => "nvarchar(max)",
        Param::Bytes(_) => "varbinary(max)",
        Param::Date(_) => "date",
        Param::Timestamp(_) => "datetime2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_map_with_precision_and_scale() {
        let cases = [
            ("bit", 1, 0, DataType::Boolean),
            ("tinyint", 3, 0, DataType::UInt8),
            ("smallint", 5, 0, DataType::Int16),
            ("int", 10, 0, DataType::Int32),
            ("bigint", 19, 0, DataType::Int64),
            ("real", 24, 0, DataType::Float32),
            ("float", 53, 0, DataType::Float64),
            ("decimal(18,2)", 18, 2, DataType::Decimal128(18, 2)),
            ("numeric(38,38)", 38, 38, DataType::Decimal128(38, 38)),
            ("money", 19, 4, DataType::Decimal128(19, 4)),
            ("smallmoney", 10, 4, DataType::Decimal128(10, 4)),
            ("date", 10, 0, DataType::Date32),
            ("time(7)", 16, 7, DataType::Time64(TimeUnit::Nanosecond)),
            (
                "datetime",
                23,
                3,
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                "datetime2(7)",
                27,
                7,
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                "datetimeoffset(7)",
                34,
                7,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            ("nvarchar(max)", 0, 0, DataType::Utf8),
            ("varchar(50)", 0, 0, DataType::Utf8),
            ("xml", 0, 0, DataType::Utf8),
            ("sql_variant", 0, 0, DataType::Utf8),
            ("varbinary(max)", 0, 0, DataType::Binary),
            ("timestamp", 0, 0, DataType::Binary),
            ("geography", 0, 0, DataType::Binary),
            ("uniqueidentifier", 0, 0, DataType::FixedSizeBinary(16)),
        ];
        for (name, p, s, want) in cases {
            assert_eq!(from_type_name(name, p, s).data_type(), want, "{name}");
        }
        let uuid = from_type_name("uniqueidentifier", 0, 0).field("id");
        assert_eq!(
            uuid.metadata().get("ARROW:extension:name").unwrap(),
            "arrow.uuid"
        );
    }

    #[test]
    fn result_metadata_types_widen_where_the_width_is_unknown() {
        assert_eq!(from_column_type(ColumnType::Intn), SqlType::BigInt);
        assert_eq!(from_column_type(ColumnType::Int1), SqlType::TinyInt);
        assert_eq!(
            from_column_type(ColumnType::Numericn).data_type(),
            DataType::Decimal128(38, FALLBACK_SCALE)
        );
        assert_eq!(from_column_type(ColumnType::NVarchar), SqlType::Text);
        assert_eq!(from_column_type(ColumnType::Udt), SqlType::Binary);
    }
}
