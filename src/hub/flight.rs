//! The Arrow Flight SQL service the platform and any Flight SQL client talk to.
//!
//! A data source is a catalog. A client picks the source, mode and compression
//! with gRPC headers (`x-gatehouse-source`, `x-gatehouse-mode`,
//! `x-gatehouse-compression`); without a source header the tenant's
//! `default_source` applies, or the only source its agents offer.

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use super::audit;
use super::parked::Parked;
use super::query;
use super::registry::Registry;
use crate::auth::jwt::Verifier;
use crate::auth::live::Live;
use crate::auth::{Principal, Sessions, Users, mode_name};
use crate::protocol::{ipc, pb};

pub const HEADER_SOURCE: &str = "x-gatehouse-source";
pub const HEADER_MODE: &str = "x-gatehouse-mode";
pub const HEADER_COMPRESSION: &str = "x-gatehouse-compression";

/// Largest bound-parameter payload accepted (bytes of Arrow IPC).
const MAX_PARAMS: usize = 1 << 20;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct HubFlight {
    pub registry: Arc<Registry>,
    pub users: Users,
    pub sessions: Sessions,
    pub auth: Arc<Live>,
    pub parked: Arc<Parked>,
    pub audit: audit::Sinks,
    /// Default source per tenant, from the hub's configuration.
    pub default_sources: std::collections::HashMap<String, String>,
    sql_info: SqlInfoData,
}

impl HubFlight {
    pub fn new(
        registry: Arc<Registry>,
        users: Users,
        sessions: Sessions,
        auth: Arc<Live>,
        parked: Arc<Parked>,
        default_sources: std::collections::HashMap<String, String>,
        audit: audit::Sinks,
    ) -> Self {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Gatehouse");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
        b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
        b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlTransactionsSupported, false);
        let sql_info = b.build().expect("static sql info");
        HubFlight {
            registry,
            users,
            sessions,
            auth,
            parked,
            audit,
            default_sources,
            sql_info,
        }
    }

    /// The caller: a bearer token from the Handshake, or a JWT from the
    /// tenant's identity provider.
    async fn principal(&self, md: &MetadataMap) -> Result<Principal, Status> {
        let auth = md
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("no credentials: send 'authorization: Bearer <JWT>' from your identity provider, or log in with the Handshake (Basic) and send the bearer token it returns"))?;
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("expected an 'authorization: Bearer <token>' header")
            })?
            .trim();
        let settings = self.auth.current();
        if let Some(mut p) = self.sessions.check(token) {
            // Roles decide with the grants in force now, not at login.
            p.access = settings.access(&p.tenant, &p.roles);
            return Ok(p);
        }
        if Verifier::looks_like_jwt(token) && !settings.jwt.is_empty() {
            return settings.jwt.verify(token).await.map_err(|e| {
                info!(error = %e, "JWT refused");
                Status::unauthenticated(e.to_string())
            });
        }
        Err(Status::unauthenticated(
            "the bearer token is unknown or expired; log in again",
        ))
    }

    /// Refuses a source or mode the caller's roles do not grant.
    fn authorize(p: &Principal, source: &str, mode: Option<pb::Mode>) -> Result<(), Status> {
        let allowed = match mode {
            Some(m) => p.access.allows(source, m),
            None => p.access.sees(source),
        };
        if allowed {
            return Ok(());
        }
        Err(Status::permission_denied(match mode {
            Some(m) => format!(
                "your roles do not allow {} queries on source {source:?}; ask your tenant's administrator for a grant",
                mode_name(m)
            ),
            None => format!(
                "your roles do not allow source {source:?}; ask your tenant's administrator for a grant"
            ),
        }))
    }

    /// The source a request addresses, within the caller's tenant.
    fn source(
        &self,
        p: &Principal,
        md: &MetadataMap,
        catalog: Option<&str>,
    ) -> Result<String, Status> {
        if let Some(s) = catalog.filter(|s| !s.is_empty()) {
            return Ok(s.to_string());
        }
        if let Some(s) = md.get(HEADER_SOURCE).and_then(|v| v.to_str().ok()) {
            return Ok(s.to_string());
        }
        if let Some(s) = self.default_sources.get(&p.tenant) {
            return Ok(s.clone());
        }
        let sources = self.registry.sources(&p.tenant);
        match sources.as_slice() {
            [(only, _)] => Ok(only.clone()),
            [] => Err(Status::unavailable(
                "no agent of your tenant is connected, so no source is available",
            )),
            many => Err(Status::invalid_argument(format!(
                "name a source with the {HEADER_SOURCE} header; available: {}",
                many.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn statement(
        &self,
        p: &Principal,
        md: &MetadataMap,
        sql: String,
    ) -> Result<pb::Statement, Status> {
        let mode = match md.get(HEADER_MODE).map(|v| v.to_str().unwrap_or("")) {
            None | Some("realtime") => pb::Mode::Realtime,
            Some("reload") => pb::Mode::Reload,
            Some(other) => {
                return Err(Status::invalid_argument(format!(
                    "{HEADER_MODE} must be realtime or reload, not {other:?}"
                )));
            }
        };
        let compression = match md.get(HEADER_COMPRESSION).map(|v| v.to_str().unwrap_or("")) {
            None | Some("none") => pb::Compression::None,
            Some("lz4") => pb::Compression::Lz4,
            Some("zstd") => pb::Compression::Zstd,
            Some(other) => {
                return Err(Status::invalid_argument(format!(
                    "{HEADER_COMPRESSION} must be none, lz4 or zstd, not {other:?}"
                )));
            }
        };
        Ok(pb::Statement {
            source: self.source(p, md, None)?,
            sql,
            mode: mode as i32,
            compression: compression as i32,
            params_ipc: Default::default(),
        })
    }

    fn request(p: &Principal, source: &str, kind: pb::request::Kind) -> pb::Request {
        pb::Request {
            query_id: uuid::Uuid::new_v4().to_string(),
            source: source.to_string(),
            kind: Some(kind),
            user: p.user.clone(),
            deadline_ms: 0,
            groups: p.groups.clone(),
        }
    }

    /// Starts a statement on the agent; refused or not, the hub audits it.
    async fn run(&self, p: &Principal, st: &pb::Statement) -> Result<query::Running, Status> {
        let req = Self::request(
            p,
            &st.source,
            pb::request::Kind::Query(pb::Query {
                sql: st.sql.clone(),
                mode: st.mode,
                params_ipc: st.params_ipc.clone(),
                compression: st.compression,
                max_rows: 0,
                batch_rows: 0,
            }),
        );
        let mut entry = audit::Entry::begin(&self.audit, p, st, &req.query_id);
        let started = async {
            let mode = pb::Mode::try_from(st.mode).unwrap_or(pb::Mode::Realtime);
            Self::authorize(p, &st.source, Some(mode))?;
            let agent = self
                .registry
                .route(&p.tenant, &st.source)
                .map_err(|e| Status::unavailable(e.to_string()))?;
            if let Some(e) = entry.as_mut() {
                e.agent(&agent.id);
            }
            info!(tenant = %p.tenant, user = %p.user, source = %st.source, agent = %agent.id, query_id = %req.query_id, mode = st.mode, "query");
            query::start(&agent, req).await
        }
        .await;
        match started {
            Ok(mut running) => {
                running.audit = entry;
                Ok(running)
            }
            Err(status) => {
                if let Some(e) = entry.as_mut() {
                    e.failed(&status);
                }
                Err(status)
            }
        }
    }

    /// Starts the statement, parks it, and describes where to fetch it.
    async fn flight_info(
        &self,
        p: &Principal,
        st: pb::Statement,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let running = self.run(p, &st).await?;
        let schema = running.schema.clone();
        let pending_id = self.parked.park(&p.tenant, running)?;
        let handle = pb::TicketHandle {
            pending_id,
            statement: Some(st),
        };
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode_to_vec().into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_total_bytes(-1);
        Ok(Response::new(info))
    }

    /// Flight info whose ticket is the command itself (metadata calls).
    fn command_info(
        cmd: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(cmd.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn batch_stream(
        batch: arrow::array::RecordBatch,
    ) -> Response<BoxStream<arrow_flight::FlightData>> {
        let schema = batch.schema();
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::once(async { Ok(batch) }))
            .map_err(Status::from);
        Response::new(Box::pin(stream))
    }

    /// The tables of the caller's sources, optionally only of `catalog`.
    async fn tables(
        &self,
        p: &Principal,
        catalog: Option<&str>,
        include_schema: bool,
    ) -> Result<Vec<(String, crate::protocol::catalog::TableInfo)>, Status> {
        let mut out = Vec::new();
        for (source, _) in self.registry.sources(&p.tenant) {
            if catalog.is_some_and(|c| c != source) || !p.access.sees(&source) {
                continue;
            }
            let agent = self
                .registry
                .route(&p.tenant, &source)
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let req = Self::request(
                p,
                &source,
                pb::request::Kind::ListTables(pb::ListTables { include_schema }),
            );
            for t in query::list_tables(&agent, req).await? {
                out.push((source.clone(), t));
            }
        }
        Ok(out)
    }
}

fn decode_handle(bytes: &[u8]) -> Result<pb::Statement, Status> {
    pb::Statement::decode(bytes)
        .map_err(|_| Status::invalid_argument("not a prepared statement handle of this hub"))
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(b) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(b)
}

#[tonic::async_trait]
impl FlightSqlService for HubFlight {
    type FlightService = HubFlight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let basic = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .ok_or_else(|| {
                Status::unauthenticated("the handshake needs an 'authorization: Basic ...' header")
            })?;
        // Some clients (grpc-go, so ADBC) omit the base64 padding.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = lenient
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let principal = self
            .users
            .verify(user, password)
            .ok_or_else(|| Status::unauthenticated("invalid user name or password"))?;
        info!(tenant = %principal.tenant, user = %principal.user, "client logged in");
        let token = self.sessions.issue(principal);
        let payload = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut resp =
            Response::new(Box::pin(futures::stream::once(async { Ok(payload) })) as BoxStream<_>);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not a valid header"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(request.metadata()).await?;
        let st = self.statement(&p, request.metadata(), query.query)?;
        self.flight_info(&p, st, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(request.metadata()).await?;
        let st = decode_handle(&cmd.prepared_statement_handle)?;
        self.flight_info(&p, st, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let p = self.principal(request.metadata()).await?;
        let handle = pb::TicketHandle::decode(ticket.statement_handle.as_ref())
            .map_err(|_| Status::invalid_argument("not a ticket of this hub"))?;
        let running = match self.parked.take(&p.tenant, &handle.pending_id) {
            Some(r) => r,
            None => {
                let st = handle
                    .statement
                    .ok_or_else(|| Status::invalid_argument("ticket carries no statement"))?;
                self.run(&p, &st).await?
            }
        };
        Ok(Response::new(Box::pin(running.into_stream())))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let p = self.principal(request.metadata()).await?;
        let st = self.statement(&p, request.metadata(), query.query)?;
        Self::authorize(&p, &st.source, None)?;
        let agent = self
            .registry
            .route(&p.tenant, &st.source)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let req = Self::request(
            &p,
            &st.source,
            pb::request::Kind::Describe(pb::Describe {
                sql: st.sql.clone(),
            }),
        );
        let described = query::describe(&agent, req).await?;
        let encapsulate = |b: &[u8]| -> Result<bytes::Bytes, Status> {
            if b.is_empty() {
                return Ok(Default::default());
            }
            let schema = ipc::decode_schema(b).map_err(|e| Status::internal(e.to_string()))?;
            schema_bytes(&schema)
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: st.encode_to_vec().into(),
            dataset_schema: encapsulate(&described.dataset_schema)?,
            parameter_schema: encapsulate(&described.parameter_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.principal(request.metadata()).await?;
        let mut st = decode_handle(&cmd.prepared_statement_handle)?;
        let stream = request
            .into_inner()
            .map_err(arrow_flight::error::FlightError::from);
        let batches: Vec<_> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
                .try_collect()
                .await
                .map_err(|e| Status::invalid_argument(format!("bad parameter batch: {e}")))?;
        let Some(first) = batches.first() else {
            return Err(Status::invalid_argument("no parameter values were sent"));
        };
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows != 1 {
            return Err(Status::invalid_argument(format!(
                "bind exactly one row of parameters per execution, got {rows}"
            )));
        }
        let row = batches.iter().find(|b| b.num_rows() == 1).unwrap_or(first);
        let bytes = ipc::write_stream(&row.schema(), std::slice::from_ref(row))
            .map_err(|e| Status::internal(e.to_string()))?;
        if bytes.len() > MAX_PARAMS {
            return Err(Status::invalid_argument(format!(
                "parameters exceed {MAX_PARAMS} bytes"
            )));
        }
        st.params_ipc = bytes.into();
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(st.encode_to_vec().into()),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are self-contained: nothing to free.
        self.principal(request.metadata()).await?;
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata()).await?;
        Self::command_info(query, &self.sql_info.schema(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        self.principal(request.metadata()).await?;
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self::batch_stream(batch))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata()).await?;
        let schema = query.into_builder().schema();
        Self::command_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let p = self.principal(request.metadata()).await?;
        let mut b = query.into_builder();
        for (source, _) in self.registry.sources(&p.tenant) {
            if p.access.sees(&source) {
                b.append(source);
            }
        }
        Ok(Self::batch_stream(
            b.build().map_err(|e| Status::internal(e.to_string()))?,
        ))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata()).await?;
        let schema = query.clone().into_builder().schema();
        Self::command_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let p = self.principal(request.metadata()).await?;
        let tables = self.tables(&p, query.catalog.as_deref(), false).await?;
        let mut pairs: Vec<(String, String)> = tables
            .into_iter()
            .filter_map(|(c, t)| t.db_schema.map(|s| (c, s)))
            .collect();
        pairs.sort();
        pairs.dedup();
        let mut b = query.into_builder();
        for (c, s) in pairs {
            b.append(c, s);
        }
        Ok(Self::batch_stream(
            b.build().map_err(|e| Status::internal(e.to_string()))?,
        ))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata()).await?;
        let schema = query.clone().into_builder().schema();
        Self::command_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let p = self.principal(request.metadata()).await?;
        let include = query.include_schema;
        let tables = self.tables(&p, query.catalog.as_deref(), include).await?;
        let mut b = query.into_builder();
        let empty = Schema::empty();
        for (catalog, t) in tables {
            let schema = t.schema.as_deref().unwrap_or(&empty);
            b.append(
                catalog,
                t.db_schema.unwrap_or_default(),
                t.name,
                t.table_type,
                schema,
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(Self::batch_stream(
            b.build().map_err(|e| Status::internal(e.to_string()))?,
        ))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata()).await?;
        let schema = query.into_builder().schema();
        Self::command_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        self.principal(request.metadata()).await?;
        let mut b = query.into_builder();
        for t in ["TABLE", "VIEW"] {
            b.append(t);
        }
        Ok(Self::batch_stream(
            b.build().map_err(|e| Status::internal(e.to_string()))?,
        ))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        Err(Status::unimplemented(format!(
            "action {:?} is not supported",
            request.get_ref().r#type
        )))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        Err(Status::unimplemented(format!(
            "tickets of type {} are not supported",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
