//! tiberius values into Arrow builders. Every value is checked against the
//! column's type: a value that would not fit is an error naming the column,
//! never a silent wrap or truncation (apart from the documented 100 ns digit).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, Time64NanosecondBuilder, TimestampMicrosecondBuilder,
    UInt8Builder,
};
use tiberius::ColumnData;
use tiberius::time::{Date, DateTime, DateTime2, SmallDateTime, Time};

use super::types::SqlType;

enum Builder {
    Bool(BooleanBuilder),
    U8(UInt8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, i8),
    Date(Date32Builder),
    Time(Time64NanosecondBuilder),
    Ts(TimestampMicrosecondBuilder),
    Text(StringBuilder),
    Bin(BinaryBuilder),
    Guid(FixedSizeBinaryBuilder),
}

/// One result column being built.
pub struct Column {
    builder: Builder,
}

/// Days from 0001-01-01 (SQL Server's `date` origin) to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 (`datetime`'s origin) to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;
const US_PER_DAY: i64 = 86_400_000_000;

impl Column {
    pub fn new(t: SqlType, cap: usize) -> Column {
        let builder = match t {
            SqlType::Bit => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            SqlType::TinyInt => Builder::U8(UInt8Builder::with_capacity(cap)),
            SqlType::SmallInt => Builder::I16(Int16Builder::with_capacity(cap)),
            SqlType::Int => Builder::I32(Int32Builder::with_capacity(cap)),
            SqlType::BigInt => Builder::I64(Int64Builder::with_capacity(cap)),
            SqlType::Real => Builder::F32(Float32Builder::with_capacity(cap)),
            SqlType::Float => Builder::F64(Float64Builder::with_capacity(cap)),
            SqlType::Decimal { precision, scale } => Builder::Dec(
                Decimal128Builder::with_capacity(cap)
                    .with_precision_and_scale(precision, scale)
                    .expect("precision 1..=38 and scale <= precision by construction"),
                scale,
            ),
            SqlType::Money | SqlType::SmallMoney => {
                let arrow::datatypes::DataType::Decimal128(p, s) = t.data_type() else {
                    unreachable!("money is a decimal")
                };
                Builder::Dec(
                    Decimal128Builder::with_capacity(cap)
                        .with_precision_and_scale(p, s)
                        .expect("fixed precision"),
                    s,
                )
            }
            SqlType::Date => Builder::Date(Date32Builder::with_capacity(cap)),
            SqlType::Time => Builder::Time(Time64NanosecondBuilder::with_capacity(cap)),
            SqlType::DateTime | SqlType::SmallDateTime | SqlType::DateTime2 => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(cap))
            }
            SqlType::DateTimeOffset => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"))
            }
            SqlType::Text => Builder::Text(StringBuilder::with_capacity(cap, cap * 16)),
            SqlType::Binary => Builder::Bin(BinaryBuilder::with_capacity(cap, cap * 16)),
            SqlType::Guid => Builder::Guid(FixedSizeBinaryBuilder::with_capacity(cap, 16)),
        };
        Column { builder }
    }

    /// Appends one value; the message says what did not fit.
    pub fn append(&mut self, v: ColumnData<'static>) -> Result<(), String> {
        if is_null(&v) {
            self.append_null();
            return Ok(());
        }
        match &mut self.builder {
            Builder::Bool(b) => match v {
                ColumnData::Bit(x) => b.append_option(x),
                other => return Err(mismatch("bit", &other)),
            },
            Builder::U8(b) => b.append_value(narrow(int(&v)?, "tinyint")?),
            Builder::I16(b) => b.append_value(narrow(int(&v)?, "smallint")?),
            Builder::I32(b) => b.append_value(narrow(int(&v)?, "int")?),
            Builder::I64(b) => b.append_value(int(&v)?),
            Builder::F32(b) => match v {
                ColumnData::F32(x) => b.append_option(x),
                ColumnData::F64(Some(x)) => b.append_value(x as f32),
                other => return Err(mismatch("real", &other)),
            },
            Builder::F64(b) => match v {
                ColumnData::F64(x) => b.append_option(x),
                ColumnData::F32(x) => b.append_option(x.map(f64::from)),
                other => return Err(mismatch("float", &other)),
            },
            Builder::Dec(b, scale) => b.append_value(decimal(&v, *scale)?),
            Builder::Date(b) => match v {
                ColumnData::Date(Some(d)) => b.append_value(date_days(d)?),
                other => return Err(mismatch("date", &other)),
            },
            Builder::Time(b) => match v {
                ColumnData::Time(Some(t)) => b.append_value(time_ns(t)?),
                other => return Err(mismatch("time", &other)),
            },
            Builder::Ts(b) => b.append_value(timestamp_us(&v)?),
            Builder::Text(b) => match v {
                ColumnData::String(Some(s)) => b.append_value(s),
                ColumnData::Xml(Some(x)) => b.append_value(x.into_owned().into_string()),
                // sql_variant arrives as its base type.
                other => b.append_value(display(&other)?),
            },
            Builder::Bin(b) => match v {
                ColumnData::Binary(Some(x)) => b.append_value(x),
                other => return Err(mismatch("binary", &other)),
            },
            Builder::Guid(b) => match v {
                ColumnData::Guid(Some(g)) => b
                    .append_value(g.as_bytes())
                    .map_err(|e| format!("uniqueidentifier: {e}"))?,
                other => return Err(mismatch("uniqueidentifier", &other)),
            },
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match &mut self.builder {
            Builder::Bool(b) => b.append_null(),
            Builder::U8(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Dec(b, _) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Bin(b) => b.append_null(),
            Builder::Guid(b) => b.append_null(),
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.builder {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Dec(b, _) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Bin(b) => Arc::new(b.finish()),
            Builder::Guid(b) => Arc::new(b.finish()),
        }
    }
}

fn is_null(v: &ColumnData<'_>) -> bool {
    match v {
        ColumnData::U8(x) => x.is_none(),
        ColumnData::I16(x) => x.is_none(),
        ColumnData::I32(x) => x.is_none(),
        ColumnData::I64(x) => x.is_none(),
        ColumnData::F32(x) => x.is_none(),
        ColumnData::F64(x) => x.is_none(),
        ColumnData::Bit(x) => x.is_none(),
        ColumnData::String(x) => x.is_none(),
        ColumnData::Guid(x) => x.is_none(),
        ColumnData::Binary(x) => x.is_none(),
        ColumnData::Numeric(x) => x.is_none(),
        ColumnData::Xml(x) => x.is_none(),
        ColumnData::DateTime(x) => x.is_none(),
        ColumnData::SmallDateTime(x) => x.is_none(),
        ColumnData::Time(x) => x.is_none(),
        ColumnData::Date(x) => x.is_none(),
        ColumnData::DateTime2(x) => x.is_none(),
        ColumnData::DateTimeOffset(x) => x.is_none(),
    }
}

fn mismatch(want: &str, got: &ColumnData<'_>) -> String {
    format!("expected {want}, the server sent {got:?}")
}

fn int(v: &ColumnData<'_>) -> Result<i64, String> {
    match v {
        ColumnData::U8(Some(x)) => Ok((*x).into()),
        ColumnData::I16(Some(x)) => Ok((*x).into()),
        ColumnData::I32(Some(x)) => Ok((*x).into()),
        ColumnData::I64(Some(x)) => Ok(*x),
        ColumnData::Bit(Some(x)) => Ok((*x).into()),
        other => Err(mismatch("an integer", other)),
    }
}

fn narrow<T: TryFrom<i64>>(v: i64, name: &str) -> Result<T, String> {
    T::try_from(v).map_err(|_| format!("{v} does not fit in {name}"))
}

/// A decimal value at the column's `scale`: exact or an error.
fn decimal(v: &ColumnData<'_>, scale: i8) -> Result<i128, String> {
    let (value, from) = match v {
        ColumnData::Numeric(Some(n)) => (n.value(), n.scale() as i8),
        // tiberius hands money over as f64 of the 4-decimal value; exact for
        // amounts below about 900 billion (2^53 ten-thousandths).
        ColumnData::F64(Some(f)) => {
            let raw = (f * 1e4).round();
            if raw.abs() >= 2f64.powi(63) {
                return Err(format!("money value {f} is out of range"));
            }
            (raw as i128, 4)
        }
        other => (i128::from(int(other)?), 0),
    };
    rescale(value, from, scale)
}

fn rescale(value: i128, from: i8, to: i8) -> Result<i128, String> {
    let diff = i32::from(to) - i32::from(from);
    let factor = 10i128
        .checked_pow(diff.unsigned_abs())
        .ok_or_else(|| format!("scale {from} cannot become {to}"))?;
    if diff >= 0 {
        value
            .checked_mul(factor)
            .ok_or_else(|| format!("decimal with scale {from} overflows at scale {to}"))
    } else if value % factor == 0 {
        Ok(value / factor)
    } else {
        Err(format!(
            "a decimal with {from} digits after the point does not fit in scale {to}; \
             CAST the column to the decimal(p,s) you need"
        ))
    }
}

fn date_days(d: Date) -> Result<i32, String> {
    i32::try_from(i64::from(d.days()) - DAYS_0001_TO_1970)
        .map_err(|_| format!("date {} days is out of range", d.days()))
}

fn time_ns(t: Time) -> Result<i64, String> {
    if t.scale() > 9 {
        return Err(format!("time scale {} is invalid", t.scale()));
    }
    let ns = u128::from(t.increments()) * 10u128.pow(9 - u32::from(t.scale()));
    if ns >= 86_400 * 1_000_000_000 {
        return Err(format!("time {ns} ns is past midnight"));
    }
    Ok(ns as i64)
}

/// `datetime`'s 1/300 s ticks, rounded to the millisecond as SQL Server shows them.
fn datetime_us(d: DateTime) -> i64 {
    let ms = (i64::from(d.seconds_fragments()) * 10 + 1) / 3;
    (i64::from(d.days()) - DAYS_1900_TO_1970) * US_PER_DAY + ms * 1_000
}

fn smalldatetime_us(d: SmallDateTime) -> i64 {
    (i64::from(d.days()) - DAYS_1900_TO_1970) * US_PER_DAY
        + i64::from(d.seconds_fragments()) * 60_000_000
}

/// `datetime2` (and the UTC part of `datetimeoffset`, which TDS sends in UTC).
fn datetime2_us(d: DateTime2) -> Result<i64, String> {
    let day = i64::from(d.date().days()) - DAYS_0001_TO_1970;
    Ok(day * US_PER_DAY + time_ns(d.time())? / 1_000)
}

fn timestamp_us(v: &ColumnData<'_>) -> Result<i64, String> {
    match v {
        ColumnData::DateTime(Some(d)) => Ok(datetime_us(*d)),
        ColumnData::SmallDateTime(Some(d)) => Ok(smalldatetime_us(*d)),
        ColumnData::DateTime2(Some(d)) => datetime2_us(*d),
        ColumnData::DateTimeOffset(Some(d)) => datetime2_us(d.datetime2()),
        ColumnData::Date(Some(d)) => Ok(i64::from(date_days(*d)?) * US_PER_DAY),
        other => Err(mismatch("a date and time", other)),
    }
}

/// A value as text, for `sql_variant` columns.
fn display(v: &ColumnData<'_>) -> Result<String, String> {
    use chrono::DateTime as Dt;
    let ts = |us: i64| {
        Dt::from_timestamp_micros(us)
            .map(|t| t.naive_utc().to_string())
            .ok_or_else(|| format!("timestamp {us} us is out of range"))
    };
    Ok(match v {
        ColumnData::U8(Some(x)) => x.to_string(),
        ColumnData::I16(Some(x)) => x.to_string(),
        ColumnData::I32(Some(x)) => x.to_string(),
        ColumnData::I64(Some(x)) => x.to_string(),
        ColumnData::F32(Some(x)) => x.to_string(),
        ColumnData::F64(Some(x)) => x.to_string(),
        ColumnData::Bit(Some(x)) => u8::from(*x).to_string(),
        ColumnData::String(Some(s)) => s.to_string(),
        ColumnData::Guid(Some(g)) => g.to_string().to_uppercase(),
        ColumnData::Binary(Some(b)) => {
            let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
            format!("0x{hex}")
        }
        ColumnData::Numeric(Some(n)) => n.to_string(),
        ColumnData::Xml(Some(x)) => x.to_string(),
        ColumnData::Date(Some(d)) => ts(i64::from(date_days(*d)?) * US_PER_DAY)?[..10].to_string(),
        ColumnData::Time(Some(t)) => {
            let ns = time_ns(*t)?;
            format!(
                "{:02}:{:02}:{:02}.{:07}",
                ns / 3_600_000_000_000,
                ns / 60_000_000_000 % 60,
                ns / 1_000_000_000 % 60,
                ns % 1_000_000_000 / 100
            )
        }
        other => ts(timestamp_us(other)?)?,
    })
}

/// About how many bytes a value takes, for cutting batches by size.
pub fn value_bytes(v: &ColumnData<'_>) -> usize {
    match v {
        ColumnData::String(Some(s)) => s.len(),
        ColumnData::Binary(Some(b)) => b.len(),
        ColumnData::Xml(Some(x)) => AsRef::<str>::as_ref(&**x).len(),
        ColumnData::Numeric(_) | ColumnData::Guid(_) => 16,
        _ => 8,
    }
}

impl crate::connectors::ColumnBuilder for Column {
    fn finish(&mut self) -> ArrayRef {
        Column::finish(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{
        Date32Type, Decimal128Type, Float32Type, Int16Type, Int32Type, Int64Type,
        Time64NanosecondType, TimestampMicrosecondType, UInt8Type,
    };
    use std::borrow::Cow;
    use tiberius::numeric::Numeric;
    use tiberius::time::DateTimeOffset;
    use tiberius::xml::XmlData;

    fn build(t: SqlType, values: Vec<ColumnData<'static>>) -> ArrayRef {
        let mut c = Column::new(t, values.len());
        for v in values {
            c.append(v).unwrap();
        }
        c.finish()
    }

    fn fails(t: SqlType, v: ColumnData<'static>) -> String {
        Column::new(t, 1).append(v).unwrap_err()
    }

    /// 2024-02-29 as days since 0001-01-01.
    fn leap_day() -> u32 {
        (chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap()))
        .num_days() as u32
    }
    const LEAP_DAY_US: i64 = 1_709_164_800_000_000;

    #[test]
    fn integers_keep_their_width_and_sign() {
        let a = build(
            SqlType::TinyInt,
            vec![ColumnData::U8(Some(255)), ColumnData::U8(None)],
        );
        assert_eq!(a.as_primitive::<UInt8Type>().value(0), 255);
        assert!(a.is_null(1));
        let a = build(SqlType::SmallInt, vec![ColumnData::I16(Some(-32768))]);
        assert_eq!(a.as_primitive::<Int16Type>().value(0), -32768);
        let a = build(SqlType::Int, vec![ColumnData::I32(Some(i32::MIN))]);
        assert_eq!(a.as_primitive::<Int32Type>().value(0), i32::MIN);
        // bigint (and the widened fallback) takes every width.
        let a = build(
            SqlType::BigInt,
            vec![
                ColumnData::I64(Some(i64::MAX)),
                ColumnData::U8(Some(7)),
                ColumnData::I32(None),
            ],
        );
        let a = a.as_primitive::<Int64Type>();
        assert_eq!((a.value(0), a.value(1), a.is_null(2)), (i64::MAX, 7, true));
        assert!(fails(SqlType::TinyInt, ColumnData::I32(Some(256))).contains("does not fit"));
        assert!(fails(SqlType::Int, ColumnData::String(Some("1".into()))).contains("integer"));
    }

    #[test]
    fn bits_and_floats() {
        let a = build(
            SqlType::Bit,
            vec![ColumnData::Bit(Some(true)), ColumnData::Bit(None)],
        );
        assert!(a.as_boolean().value(0) && a.is_null(1));
        let a = build(SqlType::Real, vec![ColumnData::F32(Some(1.5))]);
        assert_eq!(a.as_primitive::<Float32Type>().value(0), 1.5);
    }

    #[test]
    fn decimals_keep_precision_and_scale() {
        let t = SqlType::Decimal {
            precision: 38,
            scale: 10,
        };
        let max = 10i128.pow(38) - 1;
        let a = build(
            t,
            vec![
                ColumnData::Numeric(Some(Numeric::new_with_scale(max, 10))),
                ColumnData::Numeric(Some(Numeric::new_with_scale(-12345, 2))),
                ColumnData::Numeric(None),
            ],
        );
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!(a.value(0), max);
        assert_eq!(a.value(1), -1_234_500_000_000);
        assert!(a.is_null(2));
        assert_eq!(a.value_as_string(1), "-123.4500000000");
        // More digits than the column holds is an error, not a rounding.
        let narrow = SqlType::Decimal {
            precision: 10,
            scale: 2,
        };
        let err = fails(
            narrow,
            ColumnData::Numeric(Some(Numeric::new_with_scale(1234, 3))),
        );
        assert!(err.contains("CAST"), "{err}");
    }

    #[test]
    fn money_is_exact_to_four_places() {
        // tiberius decodes money as f64 of the value; the largest amounts
        // exactly representable are kept to the last ten-thousandth.
        for raw in [
            1i64,
            -2_147_483_648,
            1_234_567_890_123,
            -1_234_567_890_129,
            (1 << 53) - 1,
        ] {
            let f = raw as f64 / 1e4;
            let a = build(SqlType::Money, vec![ColumnData::F64(Some(f))]);
            assert_eq!(
                a.as_primitive::<Decimal128Type>().value(0),
                i128::from(raw),
                "{f}"
            );
        }
        let a = build(SqlType::SmallMoney, vec![ColumnData::F64(None)]);
        assert!(a.is_null(0));
    }

    #[test]
    fn dates_and_times() {
        let a = build(SqlType::Date, vec![ColumnData::Date(Some(Date::new(0)))]);
        assert_eq!(a.as_primitive::<Date32Type>().value(0), -719_162);
        let a = build(
            SqlType::Date,
            vec![ColumnData::Date(Some(Date::new(leap_day())))],
        );
        assert_eq!(
            a.as_primitive::<Date32Type>().value(0) as i64 * US_PER_DAY,
            LEAP_DAY_US
        );
        // time(7): 23:59:59.9999999 keeps all seven digits.
        let a = build(
            SqlType::Time,
            vec![ColumnData::Time(Some(Time::new(863_999_999_999, 7)))],
        );
        assert_eq!(
            a.as_primitive::<Time64NanosecondType>().value(0),
            86_399_999_999_900
        );
        // time(0)
        let a = build(
            SqlType::Time,
            vec![ColumnData::Time(Some(Time::new(3_600, 0)))],
        );
        assert_eq!(
            a.as_primitive::<Time64NanosecondType>().value(0),
            3_600_000_000_000
        );
    }

    #[test]
    fn datetimes_become_microseconds() {
        let ts = |v: ColumnData<'static>, t: SqlType| {
            build(t, vec![v])
                .as_primitive::<TimestampMicrosecondType>()
                .value(0)
        };
        // datetime 1970-01-01 00:00:00.003 (one 1/300 s tick) and .997.
        assert_eq!(
            ts(
                ColumnData::DateTime(Some(DateTime::new(25_567, 1))),
                SqlType::DateTime
            ),
            3_000
        );
        assert_eq!(
            ts(
                ColumnData::DateTime(Some(DateTime::new(25_567, 299))),
                SqlType::DateTime
            ),
            997_000
        );
        // Before 1970 and at the 1753 minimum.
        assert_eq!(
            ts(
                ColumnData::DateTime(Some(DateTime::new(-53_690, 0))),
                SqlType::DateTime
            ),
            -6_847_804_800_000_000
        );
        // smalldatetime: 1970-01-02 00:01.
        assert_eq!(
            ts(
                ColumnData::SmallDateTime(Some(SmallDateTime::new(25_568, 1))),
                SqlType::SmallDateTime
            ),
            US_PER_DAY + 60_000_000
        );
        // datetime2(7) on 2024-02-29 at 00:00:00.1234567: the 100 ns digit goes.
        let dt2 = DateTime2::new(Date::new(leap_day()), Time::new(1_234_567, 7));
        assert_eq!(
            ts(ColumnData::DateTime2(Some(dt2)), SqlType::DateTime2),
            LEAP_DAY_US + 123_456
        );
        // 9999-12-31 23:59:59.9999999 fits.
        let end = DateTime2::new(Date::new(3_652_058), Time::new(863_999_999_999, 7));
        assert_eq!(
            ts(ColumnData::DateTime2(Some(end)), SqlType::DateTime2),
            253_402_300_799_999_999
        );
        // datetimeoffset: TDS sends the UTC time; the offset does not move it.
        let dto = DateTimeOffset::new(dt2, 120);
        let a = build(
            SqlType::DateTimeOffset,
            vec![ColumnData::DateTimeOffset(Some(dto))],
        );
        assert_eq!(
            a.data_type(),
            &arrow::datatypes::DataType::Timestamp(
                arrow::datatypes::TimeUnit::Microsecond,
                Some("UTC".into())
            )
        );
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            LEAP_DAY_US + 123_456
        );
    }

    #[test]
    fn text_binary_guid_xml() {
        let a = build(
            SqlType::Text,
            vec![
                ColumnData::String(Some(Cow::Borrowed("zürich ✓"))),
                ColumnData::Xml(Some(Cow::Owned(XmlData::new("<a>1</a>")))),
                ColumnData::String(None),
                // sql_variant holding an int and a decimal.
                ColumnData::I32(Some(42)),
                ColumnData::Numeric(Some(Numeric::new_with_scale(-105, 2))),
            ],
        );
        let a = a.as_string::<i32>();
        assert_eq!(a.value(0), "zürich ✓");
        assert_eq!(a.value(1), "<a>1</a>");
        assert!(a.is_null(2));
        assert_eq!((a.value(3), a.value(4)), ("42", "-1.05"));

        let a = build(
            SqlType::Binary,
            vec![ColumnData::Binary(Some(Cow::Owned(vec![0, 255])))],
        );
        assert_eq!(a.as_binary::<i32>().value(0), &[0, 255]);

        let g = uuid::Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        let a = build(SqlType::Guid, vec![ColumnData::Guid(Some(g))]);
        assert_eq!(a.as_fixed_size_binary().value(0), g.as_bytes());
        assert!(fails(SqlType::Guid, ColumnData::I32(Some(1))).contains("uniqueidentifier"));
    }
}
