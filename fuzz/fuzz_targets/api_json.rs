//! Guards the API's JSON request bodies: arbitrary bytes are decoded with serde_json into each
//! body type the API accepts and, when that succeeds, put through the same validation the
//! server runs on them. Decoding and validation may refuse a body; they must never panic, and
//! what validation accepts must hold the limits the API documents.
//!
//! The first byte picks the body type; the rest is the body.

#![no_main]

use kenning_api::{ChatRequest, CreateSpaceRequest, SearchRequest, UpdateSpaceRequest};
use kenning::chat::{retrieval_query, MAX_QUESTION_CHARS, MAX_SOURCES};
use kenning::domain::{parse_id, Description, SpaceName};
use kenning::points::{
    matches_filter, validate_batch, validate_query, Point, PointError, PointId, PointQuery,
    DEFAULT_LIMIT, MAX_BATCH, MAX_DIMENSIONS, MAX_LIMIT,
};
use kenning::retrieve::{Search, MAX_LIMIT as MAX_SEARCH_LIMIT, MAX_QUERY_CHARS};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The body of `PUT /api/v1/spaces/{id}/points`, as `http::points::UpsertBody` declares it
/// (that type is private to the HTTP layer, so its shape is repeated here).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertBody {
    points: Vec<PointIn>,
}

/// One point of an upsert, as `http::points::PointIn` declares it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointIn {
    id: Value,
    vector: Vec<f32>,
    #[serde(default)]
    payload: Map<String, Value>,
}

/// The body of `POST /api/v1/spaces/{id}/points/search`, as `http::points::SearchBody`
/// declares it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointSearchBody {
    vector: Vec<f32>,
    limit: Option<usize>,
    min_score: Option<f32>,
    #[serde(default)]
    filter: Map<String, Value>,
}

/// `POST /api/v1/spaces/{id}/search`: `Search::parse`, as `Service::search` runs it.
fn search(body: &[u8]) {
    let Ok(req) = serde_json::from_slice::<SearchRequest>(body) else {
        return;
    };
    let Ok(search) = Search::parse(Uuid::nil(), &req) else {
        return;
    };
    assert!(!search.query.is_empty() && search.query == search.query.trim());
    assert!(search.query.chars().count() <= MAX_QUERY_CHARS);
    assert!((1..=MAX_SEARCH_LIMIT).contains(&search.limit));
    assert!(search.min_score.is_none_or(f64::is_finite));
}

/// `POST /api/v1/spaces/{id}/chat`: the checks `Chat::ask` makes before it touches a store,
/// then the search it builds from the question.
fn chat(body: &[u8]) {
    let Ok(req) = serde_json::from_slice::<ChatRequest>(body) else {
        return;
    };
    let question = req.question.trim();
    if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
        return;
    }
    let max_sources = match req.max_sources {
        // The server's configured default; any valid value does here.
        None => 5,
        Some(n) if (1..=MAX_SOURCES).contains(&n) => n,
        Some(_) => return,
    };
    if let Some(raw) = &req.conversation_id {
        let _ = parse_id(raw);
    }
    for previous in [None, Some(question)] {
        let query = retrieval_query(previous, question);
        let search = Search::parse(
            Uuid::nil(),
            &SearchRequest {
                query,
                mode: req.mode,
                limit: Some(max_sources),
                min_score: req.min_score,
                document_id: None,
            },
        );
        // A question the chat accepts must make a search the retriever accepts; only a
        // non-finite min_score is left for the search to refuse.
        if let Err(e) = search {
            assert!(
                req.min_score.is_some_and(|m| !m.is_finite()),
                "an accepted question ({} chars) made an invalid search: {e}",
                question.chars().count()
            );
        }
    }
}

/// `POST /api/v1/spaces`: `Service::create_space`'s checks.
fn create_space(body: &[u8]) {
    let Ok(req) = serde_json::from_slice::<CreateSpaceRequest>(body) else {
        return;
    };
    check_name(&req.name);
    check_description(&req.description);
}

/// `PATCH /api/v1/spaces/{id}`: `Service::update_space`'s checks.
fn update_space(body: &[u8]) {
    let Ok(req) = serde_json::from_slice::<UpdateSpaceRequest>(body) else {
        return;
    };
    if let Some(name) = &req.name {
        check_name(name);
    }
    if let Some(description) = &req.description {
        check_description(description);
    }
}

fn check_name(raw: &str) {
    if let Ok(name) = SpaceName::parse(raw) {
        let name = name.as_str();
        assert_eq!(name, raw.trim());
        assert!(!name.is_empty() && name.chars().count() <= SpaceName::MAX_CHARS);
        assert!(!name.chars().any(char::is_control));
    }
}

fn check_description(raw: &str) {
    if let Ok(d) = Description::parse(raw) {
        assert_eq!(d.as_str(), raw.trim());
        assert!(d.as_str().chars().count() <= Description::MAX_CHARS);
    }
}

/// Point ids keep one canonical form: parsing it again, or its JSON form, gives the same id.
fn check_id(id: &PointId) {
    let again = PointId::parse(id.as_str()).expect("a canonical id parses");
    assert_eq!(&again, id);
    let from_json = PointId::from_json(&id.to_json()).expect("an id's JSON form parses");
    assert_eq!(&from_json, id);
}

/// `PUT /api/v1/spaces/{id}/points`: ids as the handler converts them, then `validate_batch`,
/// which every point store runs before writing.
fn upsert_points(body: &[u8]) {
    let Ok(req) = serde_json::from_slice::<UpsertBody>(body) else {
        return;
    };
    let points = req
        .points
        .into_iter()
        .map(|p| {
            Ok(Point {
                id: PointId::from_json(&p.id)?,
                vector: p.vector,
                payload: p.payload,
            })
        })
        .collect::<Result<Vec<_>, PointError>>();
    let Ok(points) = points else { return };
    for p in &points {
        check_id(&p.id);
    }
    let Ok(dims) = validate_batch(&points) else {
        return;
    };
    assert!((1..=MAX_BATCH).contains(&points.len()));
    assert!((1..=MAX_DIMENSIONS).contains(&dims));
    for p in &points {
        assert_eq!(p.vector.len(), dims);
        assert!(p.vector.iter().all(|x| x.is_finite()));
        assert!(p.vector.iter().any(|x| *x != 0.0));
    }
}

/// `POST /api/v1/spaces/{id}/points/search`: the query as the handler builds it, then
/// `validate_query`, which every point store runs before searching.
fn search_points(body: &[u8]) {
    let Ok(req) = serde_json::from_slice::<PointSearchBody>(body) else {
        return;
    };
    let query = PointQuery {
        vector: req.vector,
        limit: req.limit.unwrap_or(DEFAULT_LIMIT),
        min_score: req.min_score,
        filter: req.filter,
    };
    if validate_query(&query).is_err() {
        return;
    }
    assert!((1..=MAX_LIMIT).contains(&query.limit));
    assert!(query
        .min_score
        .is_none_or(|m| m.is_finite() && (-1.0..=1.0).contains(&m)));
    // A valid filter holds only scalars, so a payload equal to it matches it.
    assert!(matches_filter(&query.filter, &query.filter));
}

/// A point id from a URL path (`GET`/`DELETE /api/v1/spaces/{id}/points/{pid}`), and the
/// body as a JSON id, as upserts read them.
fn point_id(body: &[u8]) {
    if let Ok(raw) = std::str::from_utf8(body) {
        if let Ok(id) = PointId::parse(raw) {
            check_id(&id);
        }
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Ok(id) = PointId::from_json(&value) {
            check_id(&id);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 7 {
        0 => search(body),
        1 => chat(body),
        2 => create_space(body),
        3 => update_space(body),
        4 => upsert_points(body),
        5 => search_points(body),
        _ => point_id(body),
    }
});
