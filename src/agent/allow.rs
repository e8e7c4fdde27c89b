//! The administrator's allow-list of tables for a source. With one set, the
//! agent parses every statement (sqlparser, in the source's SQL dialect) and
//! runs it only if it is a single query whose every table is listed. What it
//! cannot check it refuses: other statements, table functions in `FROM`,
//! names with more parts than `schema.table`, SQL it cannot parse.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{ObjectName, ObjectNamePart, Query, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::{
    Dialect, GenericDialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use sqlparser::parser::Parser;

use crate::config::agent::SourceConfig;
use crate::protocol::catalog::TableInfo;

/// Listed tables: `schema.table`, `schema.*`, or `table` (in the source's
/// default schema).
#[derive(Debug, Clone)]
pub struct AllowList {
    kind: Kind,
    default_schema: String,
    /// (schema, table or `None` for every table of the schema), normalized.
    entries: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Mysql,
    Sqlserver,
    Sqlite,
}

impl AllowList {
    /// The source's allow-list, if it has one.
    pub fn of(source: &SourceConfig) -> Option<AllowList> {
        let patterns = &source.limits().allow_tables;
        if patterns.is_empty() {
            return None;
        }
        let (kind, default_schema) = match source {
            SourceConfig::Postgres(_) => (Kind::Postgres, "public".to_string()),
            SourceConfig::Mysql(s) => (Kind::Mysql, s.database.clone()),
            SourceConfig::Sqlserver(_) => (Kind::Sqlserver, "dbo".to_string()),
            SourceConfig::Sqlite(_) => (Kind::Sqlite, "main".to_string()),
        };
        let mut list = AllowList {
            kind,
            default_schema: String::new(),
            entries: Vec::new(),
        };
        list.default_schema = list.fold(&default_schema);
        for p in patterns {
            let (schema, table) = match p.split_once('.') {
                Some((s, t)) => (list.fold(s), t),
                None => (list.default_schema.clone(), p.as_str()),
            };
            let table = (table != "*").then(|| list.fold(table));
            list.entries.push((schema, table));
        }
        Some(list)
    }

    /// Checks that a pattern is well formed (for config validation).
    pub fn valid_pattern(p: &str) -> bool {
        let parts: Vec<&str> = p.split('.').collect();
        match parts.as_slice() {
            [t] => !t.is_empty() && *t != "*",
            [s, t] => !s.is_empty() && *s != "*" && !t.is_empty(),
            _ => false,
        }
    }

    /// A listed name as the database compares it: PostgreSQL exactly (as
    /// stored: lower case unless created quoted), the others without case.
    fn fold(&self, name: &str) -> String {
        if self.kind == Kind::Postgres {
            name.to_string()
        } else {
            name.to_lowercase()
        }
    }

    fn ident(&self, value: &str, quoted: bool) -> String {
        if self.kind == Kind::Postgres && quoted {
            value.to_string()
        } else {
            value.to_lowercase()
        }
    }

    fn allows(&self, schema: &str, table: &str) -> bool {
        self.entries
            .iter()
            .any(|(s, t)| s == schema && t.as_ref().is_none_or(|t| t == table))
    }

    /// Whether a catalog entry may be listed.
    pub fn lists(&self, t: &TableInfo) -> bool {
        let schema = t
            .db_schema
            .as_deref()
            .map(|s| self.fold(s))
            .unwrap_or_else(|| self.default_schema.clone());
        self.allows(&schema, &self.fold(&t.name))
    }

    /// `Ok` if `sql` may run; otherwise why not, for the caller.
    pub fn check(&self, sql: &str) -> Result<(), String> {
        let dialect: Box<dyn Dialect> = match self.kind {
            Kind::Postgres => Box::new(PostgreSqlDialect {}),
            Kind::Mysql => Box::new(MySqlDialect {}),
            Kind::Sqlserver => Box::new(MsSqlDialect {}),
            Kind::Sqlite => Box::new(SQLiteDialect {}),
        };
        let statements = Parser::parse_sql(dialect.as_ref(), sql)
            .or_else(|_| Parser::parse_sql(&GenericDialect {}, sql))
            .map_err(|e| {
                format!(
                    "this source only allows listed tables, and the agent could not check this statement ({e})"
                )
            })?;
        let [statement] = statements.as_slice() else {
            return Err(
                "this source only allows listed tables: send one statement at a time".into(),
            );
        };
        if !matches!(statement, Statement::Query(_)) {
            return Err("this source only allows queries (SELECT) on listed tables".into());
        }
        let mut check = Check {
            list: self,
            ctes: Vec::new(),
        };
        match statement.visit(&mut check) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(why) => Err(why),
        }
    }

    /// (schema, table) of a reference, or why it cannot be checked.
    fn resolve(&self, name: &ObjectName) -> Result<(String, String), String> {
        let mut parts = Vec::new();
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(i) => {
                    parts.push(self.ident(&i.value, i.quote_style.is_some()))
                }
                ObjectNamePart::Function(_) => {
                    return Err(format!(
                        "{name}: computed names are not allowed on this source"
                    ));
                }
            }
        }
        match parts.as_slice() {
            [t] => Ok((self.default_schema.clone(), t.clone())),
            [s, t] => Ok((s.clone(), t.clone())),
            _ => Err(format!(
                "{name}: name tables as schema.table on this source (it only allows listed tables)"
            )),
        }
    }
}

struct Check<'a> {
    list: &'a AllowList,
    /// Common table expressions in scope, innermost last.
    ctes: Vec<HashSet<String>>,
}

impl Visitor for Check<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        let names = query
            .with
            .iter()
            .flat_map(|w| &w.cte_tables)
            .map(|c| {
                self.list
                    .ident(&c.alias.name.value, c.alias.name.quote_style.is_some())
            })
            .collect();
        self.ctes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<String> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
        match t {
            TableFactor::Table { args: None, .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "{other}: table functions are not allowed on this source (it only allows listed tables)"
            )),
        }
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<String> {
        if let [ObjectNamePart::Identifier(i)] = name.0.as_slice() {
            let n = self.list.ident(&i.value, i.quote_style.is_some());
            if self.ctes.iter().any(|scope| scope.contains(&n)) {
                return ControlFlow::Continue(());
            }
        }
        match self.list.resolve(name) {
            Ok((schema, table)) if self.list.allows(&schema, &table) => ControlFlow::Continue(()),
            Ok(_) => ControlFlow::Break(format!(
                "table {name} is not in this source's allow-list (the agent's administrator decides this)"
            )),
            Err(why) => ControlFlow::Break(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(kind: &str, patterns: &[&str]) -> AllowList {
        let text = format!(
            "kind = '{kind}'\nhost = 'h'\nuser = 'u'\ndatabase = 'shop'\npath = 'p'\n[limits]\nallow_tables = {patterns:?}\n"
        );
        let text = if kind == "sqlite" {
            text.replace("host = 'h'\nuser = 'u'\ndatabase = 'shop'\n", "")
        } else {
            text.replace("path = 'p'\n", "")
        };
        let source: SourceConfig = crate::config::parse(&text).unwrap();
        AllowList::of(&source).unwrap()
    }

    #[test]
    fn listed_tables_run_and_others_are_refused() {
        let pg = list("postgres", &["public.orders", "sales.*", "customers"]);
        for ok in [
            "SELECT * FROM orders",
            "SELECT * FROM public.orders o JOIN customers c ON c.id = o.customer",
            "select * from SALES.anything where x in (select id from Orders)",
            "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent",
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT * FROM t, orders",
            "SELECT count(*) FROM (SELECT * FROM sales.q1) s WHERE $1 > 0",
        ] {
            assert_eq!(pg.check(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("SELECT * FROM secrets", "not in this source's allow-list"),
            ("SELECT * FROM orders, pg_catalog.pg_authid", "allow-list"),
            (
                "SELECT (SELECT max(x) FROM hidden) FROM orders",
                "allow-list",
            ),
            ("SELECT * FROM \"Orders\"", "allow-list"),
            (
                "SELECT * FROM orders; SELECT * FROM secrets",
                "one statement",
            ),
            ("DELETE FROM orders", "only allows queries"),
            ("SELECT * FROM generate_series(1, 10)", "table functions"),
            ("SELECT * FROM other.db.orders", "schema.table"),
            ("SELECT * FROM orders WHERE", "could not check"),
            (
                "WITH orders AS (SELECT * FROM secrets) SELECT * FROM orders",
                "allow-list",
            ),
        ] {
            let e = pg.check(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn default_schemas_and_case_follow_the_database() {
        let ms = list("sqlserver", &["Sales"]);
        assert_eq!(
            ms.check("SELECT * FROM [dbo].[SALES] WHERE id = @P1"),
            Ok(())
        );
        assert!(ms.check("SELECT * FROM hr.sales").is_err());
        let my = list("mysql", &["orders"]);
        assert_eq!(my.check("SELECT * FROM shop.`Orders` WHERE id = ?"), Ok(()));
        assert!(my.check("SELECT * FROM mysql.user").is_err());
        let lite = list("sqlite", &["nation"]);
        assert_eq!(lite.check("SELECT * FROM main.nation"), Ok(()));
        let t = |s: &str, n: &str| TableInfo {
            db_schema: Some(s.into()),
            name: n.into(),
            table_type: "TABLE".into(),
            schema: None,
        };
        assert!(lite.lists(&t("main", "nation")) && !lite.lists(&t("main", "region")));
    }

    #[test]
    fn patterns_are_validated() {
        for ok in ["orders", "sales.*", "public.orders"] {
            assert!(AllowList::valid_pattern(ok), "{ok}");
        }
        for bad in ["", "*", "*.orders", "a.b.c", ".x", "x."] {
            assert!(!AllowList::valid_pattern(bad), "{bad}");
        }
    }
}
