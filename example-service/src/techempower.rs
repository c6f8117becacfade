//! The TechEmpower database endpoints, as the shared benchmark harness checks them
//! (`/db`, `/queries?q=`, `/fortunes`, `/updates?q=`), through the ORM.
//!
//! - `q` is read as an integer, 1 when missing or not an integer, then clamped to 1..=500.
//! - Every row of `/queries` and `/updates` is read by its own query (`World::find_by_id`,
//!   a constant, cached statement); `/updates` writes all rows back in one statement, ids
//!   sorted so that concurrent requests lock rows in the same order.
//! - Nothing is cached between requests.

use lifeguard_core::model::LifeModel;
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_router_ext::service::HttpRequest;
use lifeguard_router_ext::{Reply, RequestExecutor};
use rand::Rng;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::http::query_param;

/// A row of `world`.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "world", cache)]
pub struct World {
    /// 1..=10000.
    #[lifeguard(primary_key)]
    pub id: i32,
    /// 1..=10000.
    pub randomnumber: i32,
}

/// A row of `fortune`.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "fortune")]
pub struct Fortune {
    /// The fortune's id.
    #[lifeguard(primary_key)]
    pub id: i32,
    /// Its text (HTML-escaped on the page).
    pub message: String,
}

/// The JSON shape of a world row: exactly `id` and `randomNumber`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct WorldJson {
    /// 1..=10000.
    pub id: i32,
    /// 1..=10000.
    #[serde(rename = "randomNumber")]
    pub random_number: i32,
}

impl From<World> for WorldJson {
    fn from(w: World) -> Self {
        WorldJson {
            id: w.id,
            random_number: w.randomnumber,
        }
    }
}

/// `?q=`: how many rows.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountQuery {
    /// Rows to return; missing or not an integer: 1; clamped to 1..=500.
    pub q: Option<String>,
}

const WORLD_ROWS: i32 = 10_000;

/// `q` read as the harness says: an integer, else 1, clamped to 1..=500.
pub fn count(req: &HttpRequest) -> usize {
    query_param(req, "q")
        .and_then(|q| q.trim().parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 500) as usize
}

/// `n` random ids (and, for `/updates`, new numbers), drawn before any query: the thread
/// RNG is never held across a coroutine switch.
fn random_ids(n: usize) -> Vec<i32> {
    let mut rng = rand::thread_rng();
    (0..n).map(|_| rng.gen_range(1..=WORLD_ROWS)).collect()
}

fn world(db: &RequestExecutor, id: i32) -> Result<World, ApiError> {
    World::find_by_id(id)
        .one(db)?
        .ok_or_else(|| ApiError::NotFound(format!("world {id} does not exist")))
}

/// The rows of `ids`, in order: one query per row, all pipelined in one round trip.
fn worlds(db: &RequestExecutor, ids: &[i32]) -> Result<Vec<World>, ApiError> {
    World::find_each_by_id(db, ids)?
        .into_iter()
        .zip(ids)
        .map(|(w, id)| w.ok_or_else(|| ApiError::NotFound(format!("world {id} does not exist"))))
        .collect()
}

fn json<T: Serialize>(value: &T) -> Reply {
    Reply::with_body(
        200,
        lifeguard_router_ext::JSON,
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// One random world row.
#[utoipa::path(get, path = "/db", tag = "techempower",
    responses((status = 200, description = "One random row", body = WorldJson)))]
pub fn db(_req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let id = random_ids(1)[0];
    Ok(json(&WorldJson::from(world(db, id)?)))
}

/// `q` random world rows, each read by its own query (the queries pipelined in one round trip).
#[utoipa::path(get, path = "/queries", tag = "techempower", params(CountQuery),
    responses((status = 200, description = "`q` random rows", body = [WorldJson])))]
pub fn queries(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let rows: Vec<WorldJson> = worlds(db, &random_ids(count(req)))?
        .into_iter()
        .map(WorldJson::from)
        .collect();
    Ok(json(&rows))
}

/// `q` random world rows, each given a new random number that is written before the
/// response is sent.
#[utoipa::path(get, path = "/updates", tag = "techempower", params(CountQuery),
    responses((status = 200, description = "`q` rows with their new numbers", body = [WorldJson])))]
pub fn updates(req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let n = count(req);
    let (ids, numbers) = {
        let mut rng = rand::thread_rng();
        let ids: Vec<i32> = (0..n).map(|_| rng.gen_range(1..=WORLD_ROWS)).collect();
        let numbers: Vec<i32> = (0..n).map(|_| rng.gen_range(1..=WORLD_ROWS)).collect();
        (ids, numbers)
    };
    let rows: Vec<WorldJson> = worlds(db, &ids)?
        .into_iter()
        .zip(numbers)
        .map(|(mut w, number)| {
            w.randomnumber = number;
            WorldJson::from(w)
        })
        .collect();
    // An id drawn twice keeps its last number; sorted ids lock rows in one order.
    let mut last: Vec<(i32, i32)> = Vec::with_capacity(n);
    for r in rows.iter().rev() {
        if !last.iter().any(|(id, _)| *id == r.id) {
            last.push((r.id, r.random_number));
        }
    }
    last.sort_unstable();
    let (ids, numbers): (Vec<i32>, Vec<i32>) = last.into_iter().unzip();
    db.execute(
        "UPDATE world SET randomnumber = v.randomnumber \
         FROM (SELECT unnest($1::int[]) AS id, unnest($2::int[]) AS randomnumber) AS v \
         WHERE world.id = v.id",
        &[&ids, &numbers],
    )?;
    Ok(json(&rows))
}

/// Every fortune plus one added at request time, sorted by message, as an HTML table.
#[utoipa::path(get, path = "/fortunes", tag = "techempower",
    responses((status = 200, description = "An HTML page", content_type = "text/html; charset=utf-8", body = String)))]
pub fn fortunes(_req: &HttpRequest, db: &RequestExecutor) -> Result<Reply, ApiError> {
    let mut all = Fortune::find().all(db)?;
    all.push(Fortune {
        id: 0,
        message: "Additional fortune added at request time.".into(),
    });
    all.sort_by(|a, b| a.message.cmp(&b.message));
    Ok(Reply::with_body(
        200,
        "text/html; charset=utf-8",
        fortunes_html(&all),
    ))
}

/// The fortunes page.
pub fn fortunes_html(fortunes: &[Fortune]) -> String {
    let mut html = String::with_capacity(2048);
    html.push_str("<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>");
    let mut id = itoa::Buffer::new();
    for f in fortunes {
        html.push_str("<tr><td>");
        html.push_str(id.format(f.id));
        html.push_str("</td><td>");
        escape_html(&mut html, &f.message);
        html.push_str("</td></tr>");
    }
    html.push_str("</table></body></html>");
    html
}

/// Appends `text` with `& < > " '` escaped: the runs between those bytes are copied
/// whole (they are ASCII, so a run never splits a character).
pub fn escape_html(out: &mut String, text: &str) {
    let mut from = 0;
    for (at, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&text[from..at]);
        out.push_str(entity);
        from = at + 1;
    }
    out.push_str(&text[from..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_sorted_by_code_point() {
        let mut f = vec![
            Fortune {
                id: 12,
                message: "フレームワークのベンチマーク".into(),
            },
            Fortune {
                id: 11,
                message: "<script>alert(\"x\");</script>".into(),
            },
            Fortune {
                id: 2,
                message: "aren't".into(),
            },
        ];
        f.sort_by(|a, b| a.message.cmp(&b.message));
        let html = fortunes_html(&f);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(
            html.contains("<td>11</td><td>&lt;script&gt;alert(&quot;x&quot;);&lt;/script&gt;</td>")
        );
        assert!(html.contains("aren&#39;t"));
        assert!(html.find("<td>11</td>").unwrap() < html.find("<td>12</td>").unwrap());
    }

    #[test]
    fn world_json_has_exactly_the_harness_keys() {
        let v = serde_json::to_value(WorldJson::from(World {
            id: 3,
            randomnumber: 7,
        }))
        .unwrap();
        assert_eq!(v, serde_json::json!({"id": 3, "randomNumber": 7}));
    }
}
