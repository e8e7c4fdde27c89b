//! Binding parameters to a prepared PostgreSQL statement's declared types.

use bytes::BufMut;
use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::connectors::ConnectorError;
use crate::connectors::params::Param;

type BoxErr = Box<dyn std::error::Error + Sync + Send>;
pub type Bound = Box<dyn ToSql + Sync + Send>;

/// SQL NULL of whatever type the statement expects.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut bytes::BytesMut) -> Result<IsNull, BoxErr> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// A decimal given as text, sent in PostgreSQL's binary numeric format.
#[derive(Debug)]
struct Numeric(String);

impl ToSql for Numeric {
    fn to_sql(&self, _: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxErr> {
        let s = self.0.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty()
            || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
        {
            return Err(format!("{:?} is not a decimal number", self.0).into());
        }
        let int = int.trim_start_matches('0');
        // Pad so the integer part splits into groups of 4 from the decimal point.
        let int_pad = (4 - int.len() % 4) % 4;
        let frac_pad = (4 - frac.len() % 4) % 4;
        let digits_str = format!("{}{int}{frac}{}", "0".repeat(int_pad), "0".repeat(frac_pad));
        let mut digits: Vec<i16> = digits_str
            .as_bytes()
            .chunks(4)
            .map(|c| {
                std::str::from_utf8(c)
                    .expect("ascii")
                    .parse()
                    .expect("digits")
            })
            .collect();
        let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
        while digits.first() == Some(&0) {
            digits.remove(0);
            weight -= 1;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            weight = 0;
        }
        out.put_i16(digits.len() as i16);
        out.put_i16(weight);
        out.put_u16(if neg && !digits.is_empty() { 0x4000 } else { 0 });
        out.put_u16(frac.len() as u16);
        for d in digits {
            out.put_i16(d);
        }
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
    to_sql_checked!();
}

fn wrong(i: usize, p: &Param, ty: &Type) -> ConnectorError {
    ConnectorError::Params(format!(
        "parameter ${}: cannot bind {p:?} to type {ty}",
        i + 1
    ))
}

fn range<T: TryFrom<i64>>(i: usize, v: i64, ty: &Type) -> Result<T, ConnectorError> {
    T::try_from(v).map_err(|_| {
        ConnectorError::Params(format!(
            "parameter ${}: {v} is out of range for {ty}",
            i + 1
        ))
    })
}

/// Converts each parameter to what its placeholder's type accepts.
pub fn bind(params: &[Param], types: &[Type]) -> Result<Vec<Bound>, ConnectorError> {
    if params.len() != types.len() {
        return Err(ConnectorError::Params(format!(
            "the statement has {} placeholders but {} values were bound",
            types.len(),
            params.len()
        )));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (p, ty))| one(i, p, ty))
        .collect()
}

fn one(i: usize, p: &Param, ty: &Type) -> Result<Bound, ConnectorError> {
    let text_like = matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext";
    Ok(match (p, ty) {
        (Param::Null, _) => Box::new(Null),
        (Param::Bool(b), &Type::BOOL) => Box::new(*b),
        (Param::Int(v), &Type::INT2) => Box::new(range::<i16>(i, *v, ty)?),
        (Param::Int(v), &Type::INT4) => Box::new(range::<i32>(i, *v, ty)?),
        (Param::Int(v), &Type::INT8) => Box::new(*v),
        (Param::Int(v), &Type::OID) => Box::new(range::<u32>(i, *v, ty)?),
        (Param::Int(v), &Type::FLOAT4) => Box::new(*v as f32),
        (Param::Int(v), &Type::FLOAT8) => Box::new(*v as f64),
        (Param::Int(v), &Type::NUMERIC) => Box::new(Numeric(v.to_string())),
        (Param::Float(v), &Type::FLOAT4) => Box::new(*v as f32),
        (Param::Float(v), &Type::FLOAT8) => Box::new(*v),
        (Param::Float(v), &Type::NUMERIC) if v.is_finite() => Box::new(Numeric(format!("{v}"))),
        (Param::Text(s), &Type::NUMERIC) => Box::new(Numeric(s.clone())),
        (Param::Text(s), _) if text_like => Box::new(s.clone()),
        (Param::Text(s), &Type::JSON | &Type::JSONB) => {
            Box::new(serde_json::from_str::<serde_json::Value>(s).map_err(|e| {
                ConnectorError::Params(format!("parameter ${}: not JSON: {e}", i + 1))
            })?)
        }
        (Param::Text(s), &Type::UUID) => Box::new(
            uuid::Uuid::parse_str(s)
                .map_err(|e| ConnectorError::Params(format!("parameter ${}: {e}", i + 1)))?,
        ),
        (Param::Text(s), &Type::DATE) => Box::new(
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|e| ConnectorError::Params(format!("parameter ${}: {e}", i + 1)))?,
        ),
        (Param::Text(s), &Type::INT2 | &Type::INT4 | &Type::INT8) => {
            let v: i64 = s.trim().parse().map_err(|_| wrong(i, p, ty))?;
            return one(i, &Param::Int(v), ty);
        }
        (Param::Bytes(b), &Type::BYTEA) => Box::new(b.clone()),
        (Param::Date(d), &Type::DATE) => Box::new(*d),
        (Param::Date(d), &Type::TIMESTAMP) => Box::new(d.and_hms_opt(0, 0, 0).expect("midnight")),
        (Param::Timestamp(t), &Type::TIMESTAMP) => Box::new(*t),
        (Param::Timestamp(t), &Type::TIMESTAMPTZ) => Box::new(Utc.from_utc_datetime(t)),
        (Param::Timestamp(t), &Type::DATE) => Box::new(NaiveDateTime::date(t)),
        _ => return Err(wrong(i, p, ty)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::postgres::decode::numeric_to_i128;

    #[test]
    fn numeric_round_trip() {
        for (s, scale, want) in [
            ("123.45", 2, 12345i128),
            ("-0.5", 1, -5),
            ("0", 0, 0),
            ("10000", 0, 10000),
            ("0.0001", 4, 1),
            ("00012.300", 3, 12300),
        ] {
            let mut buf = bytes::BytesMut::new();
            Numeric(s.into()).to_sql(&Type::NUMERIC, &mut buf).unwrap();
            assert_eq!(numeric_to_i128(&buf, scale).unwrap(), want, "{s}");
        }
        let mut buf = bytes::BytesMut::new();
        assert!(
            Numeric("1e5".into())
                .to_sql(&Type::NUMERIC, &mut buf)
                .is_err()
        );
    }

    #[test]
    fn binds_by_declared_type() {
        assert!(bind(&[Param::Int(70000)], &[Type::INT2]).is_err());
        assert!(bind(&[Param::Int(7)], &[Type::INT2]).is_ok());
        assert!(bind(&[Param::Bool(true)], &[Type::TEXT]).is_err());
        assert!(
            bind(
                &[Param::Null, Param::Text("x".into())],
                &[Type::INT4, Type::TEXT]
            )
            .is_ok()
        );
        assert!(bind(&[], &[Type::INT4]).is_err());
    }
}
