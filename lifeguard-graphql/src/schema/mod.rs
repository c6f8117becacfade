//! The schema: built once from the registered models, executed per request on the calling
//! coroutine.

mod connection;
mod inputs;
mod node;
mod objects;
pub(crate) mod roots;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::dynamic::{Object, Scalar, SchemaBuilder as Engine};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerError};
use lifeguard_core::model::{InputRecord, LifeModel, RelationKind};
use lifeguard_core::query::quote;
use lifeguard_core::Executor;

use crate::column::{Kind, CUSTOM_SCALARS};
use crate::documents::Documents;
use crate::limits::{check_document, Limits};
use crate::model::{lower_first, pluralize, upper_first, FieldRef, ModelInfo, RelationInfo};
use crate::mutation::Writer;
use crate::run;

/// What every resolver of one schema shares.
pub(crate) struct Shared {
    pub models: Vec<ModelInfo>,
    pub limits: Limits,
    pub documents: Documents,
}

/// A GraphQL schema generated from Lifeguard models.
///
/// ```no_run
/// use lifeguard_core::{LifeModel, LifeRecord};
/// use lifeguard_graphql::Schema;
///
/// #[derive(Debug, Clone, LifeModel, LifeRecord)]
/// #[lifeguard(table_name = "authors", has_many(Book, from = "id", to = "author_id"))]
/// pub struct Author { #[lifeguard(primary_key, auto_increment)] pub id: i64, pub name: String }
///
/// #[derive(Debug, Clone, LifeModel, LifeRecord)]
/// #[lifeguard(table_name = "books", belongs_to(Author, from = "author_id", to = "id"))]
/// pub struct Book { #[lifeguard(primary_key, auto_increment)] pub id: i64, pub author_id: i64, pub title: String }
///
/// # fn demo(db: &impl lifeguard_core::Executor) -> Result<(), Box<dyn std::error::Error>> {
/// let schema = Schema::builder().model::<Author>().model::<Book>().build()?;
/// let response = schema.execute(db, "{ authors(limit: 5) { name books { title } } }".into());
/// assert!(response.errors.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Schema {
    engine: async_graphql::dynamic::Schema,
    shared: Arc<Shared>,
}

/// Registers models and limits, then builds the [`Schema`].
#[derive(Default)]
pub struct SchemaBuilder {
    models: Vec<ModelInfo>,
    limits: Limits,
}

/// Why a schema cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GraphQL schema: {}", self.0)
    }
}

impl std::error::Error for SchemaError {}

impl Schema {
    /// A builder with the default [`Limits`].
    pub fn builder() -> SchemaBuilder {
        SchemaBuilder::default()
    }

    /// Runs `request` on `db` on this coroutine and answers it. Queries run on `db` as they
    /// are; a mutation runs on it too, so run mutations in a transaction (the HTTP binding
    /// and [`Schema::execute_on`] do).
    ///
    /// The document is refused before parsing when it is larger or nests deeper than the
    /// [`Limits`] allow.
    pub fn execute(&self, db: &dyn Executor, request: Request) -> Response {
        match self.prepare(request) {
            Ok(prepared) => self.run(db, prepared.request).response,
            Err(refused) => Response::from_errors(refused),
        }
    }

    /// Runs `request` through the pool handle `db`: a query with its read options, a
    /// mutation in one transaction on the primary, rolled back when any field fails (the
    /// response then carries the errors and no data).
    pub fn execute_on(&self, db: &lifeguard_core::pool::Db, request: Request) -> Response {
        match self.prepare(request) {
            Ok(prepared) => self.run_on(db, prepared).response,
            Err(refused) => Response::from_errors(refused),
        }
    }

    /// Checks `request` against the document limits and parses it: the refusal is a
    /// request error.
    pub(crate) fn prepare(&self, mut request: Request) -> Result<Prepared, Vec<ServerError>> {
        let refuse = |e: ServerError| vec![e];
        check_document(&self.shared.limits, &request.query)
            .map_err(|e| refuse(ServerError::new(e, None)))?;
        let mut doc = self
            .shared
            .documents
            .parse(&request.query)
            .map_err(|e| refuse(e.into()))?;
        crate::variables::drop_absent(&mut doc, &request.variables);
        let mutation = operation_type(&doc, request.operation_name.as_deref())
            == Some(OperationType::Mutation);
        request.set_parsed_query(doc);
        Ok(Prepared { request, mutation })
    }

    /// Executes a prepared request on `db` as it is.
    fn run(&self, db: &dyn Executor, request: Request) -> Outcome {
        run::with_db(db, || {
            // Resolvers finish when called; the bound only matters if the engine pends.
            let response = run::block_on(self.engine.execute(request), Duration::from_secs(60))
                .unwrap_or_else(|| {
                    Response::from_errors(vec![ServerError::new("execution did not finish", None)])
                });
            Outcome {
                response,
                executed: run::fields_ran(),
            }
        })
    }

    /// Executes a prepared request through `db` (see [`Schema::execute_on`]).
    pub(crate) fn run_on(&self, db: &lifeguard_core::pool::Db, prepared: Prepared) -> Outcome {
        if !prepared.mutation {
            return self.run(db, prepared.request);
        }
        let mut answer = None;
        let mut request = Some(prepared.request);
        let outcome = db.transaction(|tx| {
            let Some(request) = request.take() else {
                // A retried transaction has no request left to run: report the first outcome.
                return Err(lifeguard_core::Error::InvalidUse(
                    "graphql mutation retried".into(),
                ));
            };
            let done = self.run(&*tx, request);
            let failed = done.response.is_err();
            answer = Some(done);
            if failed {
                // Any error rolls the whole operation back.
                Err(lifeguard_core::Error::InvalidUse(
                    "graphql mutation failed".into(),
                ))
            } else {
                Ok(())
            }
        });
        match (outcome, answer) {
            (Ok(()), Some(done)) => done,
            (Err(_), Some(done)) if done.response.is_err() => Outcome {
                response: Response::from_errors(done.response.errors),
                executed: done.executed,
            },
            (Err(e), _) => Outcome {
                response: Response::from_errors(vec![crate::error::LoadError::Db(e)
                    .into_graphql()
                    .into_server_error(async_graphql::Pos::default())]),
                executed: true,
            },
            (Ok(()), None) => Outcome {
                response: Response::from_errors(vec![ServerError::new("no response", None)]),
                executed: false,
            },
        }
    }

    /// The schema in SDL.
    pub fn sdl(&self) -> String {
        self.engine.sdl()
    }

    /// The limits the schema enforces.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }
}

/// A request within the limits, parsed.
pub(crate) struct Prepared {
    request: Request,
    mutation: bool,
}

impl Prepared {
    /// Whether the operation it runs is a mutation.
    pub(crate) fn is_mutation(&self) -> bool {
        self.mutation
    }
}

/// What executing a request gave: the response, and whether any field ran (when none did,
/// its errors are request errors: the document did not validate).
pub(crate) struct Outcome {
    pub response: Response,
    pub executed: bool,
}

/// The type of the operation `name` (or the only one) of `doc`.
fn operation_type(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(n)) => ops.get(n).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        _ => None,
    }
}

impl SchemaBuilder {
    /// Registers `M`: its object type, filters, order, root fields and (unless the model is
    /// `#[lifeguard(graphql(read_only))]`) its mutations. Its relations become fields when
    /// their targets are registered too.
    pub fn model<M: LifeModel>(mut self) -> Self
    where
        M::Record: InputRecord,
    {
        self.models
            .push(ModelInfo::of::<M>(Some(Writer::of::<M>())));
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The schema; an error names a model registered twice, clashing names, or an
    /// ambiguous relation target.
    pub fn build(mut self) -> Result<Schema, SchemaError> {
        if self.models.is_empty() {
            return Err(SchemaError("no model is registered".into()));
        }
        resolve_relations(&mut self.models)?;
        node::check(&self.models)?;
        let shared = Arc::new(Shared {
            models: self.models,
            limits: self.limits,
            documents: Documents::default(),
        });
        let has_mutations = shared.models.iter().any(|m| m.writer.is_some());
        let mut engine = async_graphql::dynamic::Schema::build(
            "Query",
            has_mutations.then_some("Mutation"),
            None,
        );
        engine = register_types(engine, &shared);
        let mut query = Object::new("Query");
        let mut mutation = Object::new("Mutation");
        let mut any_mutation = false;
        if shared.models.iter().any(node::identifiable) {
            query = query.field(node::root_field(&shared));
        }
        for i in 0..shared.models.len() {
            for f in roots::query_fields(&shared, i) {
                query = query.field(f);
            }
            for f in roots::mutation_fields(&shared, i) {
                mutation = mutation.field(f);
                any_mutation = true;
            }
        }
        engine = engine.register(query);
        if has_mutations {
            if !any_mutation {
                return Err(SchemaError("no model has a writable column".into()));
            }
            engine = engine.register(mutation);
        }
        let limits = &shared.limits;
        engine = engine
            .limit_depth(limits.max_depth)
            .limit_complexity(limits.max_fields)
            .limit_recursive_depth(limits.max_nesting)
            .limit_directives(8);
        if !limits.introspection {
            engine = engine.disable_introspection();
        }
        let engine = engine.finish().map_err(|e| SchemaError(e.0))?;
        Ok(Schema { engine, shared })
    }
}

/// Every type but the roots.
fn register_types(mut engine: Engine, shared: &Arc<Shared>) -> Engine {
    // Only the scalars some column uses: an unused one would be in the SDL but not in
    // introspection (which lists reachable types).
    let used = |name: &str| {
        shared
            .models
            .iter()
            .flat_map(|m| &m.columns)
            .any(|c| c.kind.scalar() == name)
    };
    for (name, description) in CUSTOM_SCALARS.iter().filter(|(n, _)| used(n)) {
        engine = engine.register(Scalar::new(*name).description(*description));
    }
    engine = engine
        .register(inputs::direction())
        .register(objects::page_info());
    for f in inputs::scalar_filters(&shared.models) {
        engine = engine.register(f);
    }
    for (e, filter) in inputs::enums(&shared.models) {
        engine = engine.register(e).register(filter);
    }
    if shared.models.iter().any(node::identifiable) {
        engine = engine.register(node::interface());
    }
    for m in &shared.models {
        let mut object = objects::model_object(&shared.models, m);
        if node::identifiable(m) {
            object = node::implement(object, m);
        }
        engine = engine.register(object).register(inputs::model_filter(m));
        if let Some(o) = inputs::model_order(m) {
            engine = engine.register(o);
        }
        let (conn, edge) = objects::connection(m);
        engine = engine.register(conn).register(edge);
        if m.writer.is_some() {
            if let Some((create, update)) = inputs::write_inputs(m) {
                engine = engine.register(create).register(update);
            }
        }
    }
    engine
}

/// Links each model's relation attributes to the registered targets and names the fields.
fn resolve_relations(models: &mut [ModelInfo]) -> Result<(), SchemaError> {
    for (i, a) in models.iter().enumerate() {
        for b in &models[i + 1..] {
            if a.type_name == b.type_name {
                return Err(SchemaError(format!("two models are named {}", a.type_name)));
            }
        }
    }
    for i in 0..models.len() {
        let mut relations = Vec::new();
        for def in models[i].raw_relations {
            let wanted = crate::model::last_segment(def.to_model);
            let targets: Vec<usize> = (0..models.len())
                .filter(|&j| models[j].rust_name == wanted)
                .collect();
            let target = match targets.as_slice() {
                [] => continue,
                [t] => *t,
                _ => {
                    return Err(SchemaError(format!(
                        "{}: the relation target {} names more than one registered model",
                        models[i].type_name, def.to_model
                    )))
                }
            };
            let owner = &models[i];
            let t = &models[target];
            let many = matches!(def.kind, RelationKind::HasMany | RelationKind::ManyToMany);
            let base = if many {
                pluralize(&lower_first(&t.type_name))
            } else {
                lower_first(&t.type_name)
            };
            let taken = |name: &str, rels: &[RelationInfo]| {
                owner.fields.contains_key(name) || rels.iter().any(|r| r.field == name)
            };
            let mut field = base.clone();
            if taken(&field, &relations) {
                field = format!(
                    "{base}By{}",
                    upper_first(&crate::model::camel(def.from_column))
                );
            }
            if taken(&field, &relations) {
                field = format!(
                    "{base}By{}",
                    upper_first(&crate::model::camel(def.to_column))
                );
            }
            if taken(&field, &relations) {
                return Err(SchemaError(format!(
                    "{}: cannot name the relation to {} ({field} is taken)",
                    owner.type_name, t.type_name
                )));
            }
            let (child_key, key_kind) = match &def.via {
                Some(via) => (
                    format!("{}.{}", via.table, quote(via.from_column)),
                    owner.kind_of(def.from_column).unwrap_or(Kind::Text),
                ),
                None => (
                    format!("{}.{}", t.table, quote(def.to_column)),
                    t.kind_of(def.to_column).unwrap_or(Kind::Text),
                ),
            };
            let parent_column = owner
                .stored
                .iter()
                .find(|(c, _)| *c == def.from_column)
                .map(|(c, _)| *c)
                .ok_or_else(|| {
                    SchemaError(format!(
                        "{}: no column {}",
                        owner.type_name, def.from_column
                    ))
                })?;
            relations.push(RelationInfo {
                field,
                def: *def,
                target,
                parent_column,
                child_key,
                key_kind,
            });
        }
        let m = &mut models[i];
        for (r, rel) in relations.iter().enumerate() {
            m.fields.insert(rel.field.clone(), FieldRef::Relation(r));
        }
        m.relations = relations;
    }
    Ok(())
}
