//! devhub's route engine: edgeHub route statements (PROTOCOL.md §10), pure code without I/O.
//!
//! A [`Route`] is parsed once ([`parse_route`]) and then matched against messages described by
//! their source path ([`source_path`]) and a [`RoutedMessage`]. [`Router`] picks, for each distinct
//! sink, the matching route with the best priority.

pub mod condition;
pub mod lexer;
pub mod route;

use std::collections::BTreeMap;
use std::fmt;

pub use condition::{Condition, Value};

/// edgeHub's default route priority: below every explicit priority (0-9).
pub const DEFAULT_PRIORITY: u32 = 2_000_000_000;

/// A message as the route engine sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutedMessage {
    pub body: Vec<u8>,
    /// System properties under edgeHub's internal names: messageId, correlationId, userId, to,
    /// contentType, contentEncoding, messageSchema, creationTime, enqueuedTime, connectionDeviceId,
    /// connectionModuleId, outputName, connectionAuthMethod, connectionDeviceGenerationId,
    /// edgeHubOriginInterface, expiryTimeUtc.
    pub system: BTreeMap<String, String>,
    /// Application properties in order; `None` is a null value.
    pub app: Vec<(String, Option<String>)>,
}

impl RoutedMessage {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        RoutedMessage {
            body: body.into(),
            ..Default::default()
        }
    }

    /// Builder: sets a system property (edgeHub internal name, e.g. `contentType`).
    pub fn with_system(mut self, key: &str, value: &str) -> Self {
        self.system.insert(key.to_string(), value.to_string());
        self
    }

    /// Builder: appends an application property.
    pub fn with_app(mut self, key: &str, value: Option<&str>) -> Self {
        self.app.push((key.to_string(), value.map(str::to_string)));
        self
    }
}

/// The source path of reported-property change events (twin change notifications): routes
/// `FROM /twinChangeNotifications/*` and `FROM /*` see them; `/messages/...` routes do not.
pub const TWIN_CHANGE_NOTIFICATIONS_SOURCE: &str = "/twinChangeNotifications/";

/// The source path edgeHub gives a message: `/messages/modules/{m}/outputs/{o}/`,
/// `/messages/modules/{m}/` (module without output) or `/messages/` (device). Twin change
/// notifications use [`TWIN_CHANGE_NOTIFICATIONS_SOURCE`].
pub fn source_path(module: Option<&str>, output: Option<&str>) -> String {
    match (module, output) {
        (Some(m), Some(o)) => format!("/messages/modules/{m}/outputs/{o}/"),
        (Some(m), None) => format!("/messages/modules/{m}/"),
        (None, _) => "/messages/".to_string(),
    }
}

/// Where a route delivers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Sink {
    /// `$upstream`: IoT Hub.
    Upstream,
    /// `BrokeredEndpoint("/modules/{module}/inputs/{input}")`.
    Module { module: String, input: String },
}

impl Sink {
    /// edgeHub's endpoint id: `$upstream` or `{edgeDevice}/{module}/{input}`.
    pub fn endpoint_id(&self, edge_device_id: &str) -> String {
        match self {
            Sink::Upstream => "$upstream".to_string(),
            Sink::Module { module, input } => format!("{edge_device_id}/{module}/{input}"),
        }
    }
}

impl fmt::Display for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Upstream => f.write_str("$upstream"),
            Sink::Module { module, input } => {
                write!(f, "BrokeredEndpoint(\"/modules/{module}/inputs/{input}\")")
            }
        }
    }
}

/// A parsed route.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub name: String,
    /// The route statement as written.
    pub text: String,
    /// The normalized source prefix: trailing `*` and `/` trimmed, one `/` appended
    /// (`/messages/modules/a/*` -> `/messages/modules/a/`, `/*` -> `/`).
    pub source: String,
    pub condition: Option<Condition>,
    pub sink: Sink,
    /// 0 is the highest; [`DEFAULT_PRIORITY`] when not given.
    pub priority: u32,
    /// 0 inherits the global store-and-forward TTL.
    pub ttl_secs: u32,
}

impl Route {
    /// Whether `source_path` starts with the source prefix, case-insensitively (one trailing `/`
    /// is added to the path if missing). The appended `/` is why `/outputs/o` misses `/outputs/o2/`.
    pub fn matches_source(&self, source_path: &str) -> bool {
        let prefix = self.source.to_lowercase();
        let mut path = source_path.to_lowercase();
        if !path.ends_with('/') {
            path.push('/');
        }
        path.starts_with(&prefix)
    }

    /// Source matches and the condition (if any) evaluates to boolean true.
    pub fn matches(&self, source_path: &str, msg: &RoutedMessage) -> bool {
        self.matches_source(source_path)
            && match &self.condition {
                Some(c) => c.is_true(msg),
                None => true,
            }
    }
}

/// A route that failed to parse: which route, where (1-based character column) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError {
    pub route: String,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route '{}', column {}: {}",
            self.route, self.column, self.message
        )
    }
}

impl std::error::Error for RouteError {}

impl From<RouteError> for edgemodule::Error {
    fn from(e: RouteError) -> Self {
        edgemodule::Error::new(edgemodule::ErrorKind::Configuration, e.to_string())
    }
}

/// Parses one route statement; priority and TTL get their defaults.
pub fn parse_route(name: &str, text: &str) -> Result<Route, RouteError> {
    route::parse(name, text)
}

/// A set of routes.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes that deliver `msg`: one per distinct sink, the matching route with the lowest
    /// priority number (ties: the earlier route). Returned in the routes' order.
    pub fn route(&self, source_path: &str, msg: &RoutedMessage) -> Vec<&Route> {
        let mut best: Vec<usize> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            if !r.matches(source_path, msg) {
                continue;
            }
            match best.iter_mut().find(|j| self.routes[**j].sink == r.sink) {
                Some(j) => {
                    if r.priority < self.routes[*j].priority {
                        *j = i;
                    }
                }
                None => best.push(i),
            }
        }
        best.sort_unstable();
        best.into_iter().map(|i| &self.routes[i]).collect()
    }
}

#[cfg(test)]
mod tests;
