//! GraphiQL, served by the service itself: the page, and its scripts and styles read from a
//! local directory (filled by `scripts/graphiql-assets` from pinned npm packages), never from
//! a CDN.
//!
//! The page carries no inline script or style and its own `Content-Security-Policy` (scripts,
//! styles and requests only to its own origin), so a browser opening it talks to nothing but
//! the service. When the assets are not installed the page says how to install them instead
//! of staying blank.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The npm packages the page is written for, as `scripts/graphiql-assets` writes them into
/// [`STAMP_FILE`]: assets of other versions count as not installed, since the page's start-up
/// script uses GraphiQL 3's global build and React 18's `createRoot`.
const STAMP: &str = "graphiql@3.9.0 react@18.3.1 react-dom@18.3.1\n";

/// The file in the assets directory naming the installed versions.
const STAMP_FILE: &str = "VERSIONS";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files copied from the npm packages, as (name, content type). A name is looked up here,
/// never joined to the directory as the client sent it.
const VENDORED: [(&str, &str); 4] = [
    ("react.production.min.js", JS),
    ("react-dom.production.min.js", JS),
    ("graphiql.min.js", JS),
    ("graphiql.min.css", CSS),
];

/// The start-up script and its styles, compiled in so that the page can report missing
/// vendored files.
const BUILT_IN: [(&str, &str, &str); 2] = [
    ("lifeguard-graphiql.js", JS, START_JS),
    ("lifeguard-graphiql.css", CSS, START_CSS),
];

/// Renders GraphiQL into `#graphiql` with a fetcher that POSTs JSON to the endpoint named by
/// the element's `data-endpoint`, or shows `#lg-missing` when the vendored scripts did not
/// load. It echoes the service's consistency token so that a query after a mutation reads
/// the mutation's writes even on a replica.
const START_JS: &str = r#""use strict";
(function () {
  var root = document.getElementById("graphiql");
  var missing = document.getElementById("lg-missing");
  if (!root || !missing) {
    return;
  }
  if (!window.React || !window.ReactDOM || !window.GraphiQL) {
    root.hidden = true;
    missing.hidden = false;
    return;
  }
  var endpoint = root.getAttribute("data-endpoint");
  var tokenHeader = "Lifeguard-Consistency-Token";
  var token = null;
  function fetcher(params, opts) {
    var headers = {
      "Content-Type": "application/json",
      "Accept": "application/graphql-response+json, application/json"
    };
    var own = (opts && opts.headers) || {};
    var ownToken = false;
    Object.keys(own).forEach(function (name) {
      headers[name] = String(own[name]);
      if (name.toLowerCase() === tokenHeader.toLowerCase()) {
        ownToken = true;
      }
    });
    if (token && !ownToken) {
      headers[tokenHeader] = token;
    }
    return fetch(endpoint, {
      method: "POST",
      headers: headers,
      credentials: "same-origin",
      body: JSON.stringify(params)
    }).then(function (response) {
      var next = response.headers.get(tokenHeader);
      if (next) {
        token = next;
      }
      return response.text().then(function (text) {
        try {
          return JSON.parse(text);
        } catch (e) {
          return { errors: [{ message: "HTTP " + response.status + ": " + text }] };
        }
      });
    });
  }
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, { fetcher: fetcher }));
})();
"#;

const START_CSS: &str = "html, body, #graphiql { height: 100%; margin: 0; }
body { font-family: system-ui, sans-serif; }
.lg-message { max-width: 48rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
";

/// The GraphiQL page for the endpoint at `endpoint` (e.g. "/graphql"); its scripts and
/// styles are loaded from `{endpoint}/assets/` (the service's own, never a CDN).
///
/// `endpoint` is a path on the service's own origin: the page's `Content-Security-Policy`
/// allows scripts, styles and requests from that origin only. It is escaped for HTML; the page
/// has no inline script. A trailing `/` is dropped before `assets/` is appended.
///
/// The policy still allows inline styles: GraphiQL's dialogs (settings, shortcuts) inject a
/// `<style>` element, which a stricter policy blocks.
pub fn page(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let base = if trimmed.is_empty() { "" } else { trimmed };
    let ep = escape_html(if endpoint.is_empty() { "/" } else { endpoint });
    let assets = escape_html(&format!("{base}/assets/"));
    let v = asset_version(STAMP, START_JS, START_CSS);
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<title>GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{assets}graphiql.min.css?v={v}">
<link rel="stylesheet" href="{assets}lifeguard-graphiql.css?v={v}">
</head>
<body>
<div id="graphiql" data-endpoint="{ep}"><p class="lg-message">Loading GraphiQL&hellip;</p></div>
<div id="lg-missing" class="lg-message" hidden>
<h1>GraphiQL is not installed</h1>
<p>This service serves GraphiQL's scripts itself, from <code>{assets}</code>, and did not find
them. In the Lifeguard checkout run <code>scripts/graphiql-assets</code> (it fetches the pinned
<code>graphiql</code>, <code>react</code> and <code>react-dom</code> packages from the npm registry
into <code>target/graphiql-assets/</code>), or point <code>LIFEGUARD_GRAPHIQL_DIR</code> at the
directory it filled, restart the service if it was started elsewhere, and reload this page.</p>
<p>The GraphQL endpoint works without them: POST <code>{{"query": "{{ __typename }}"}}</code> as
<code>application/json</code> to <code>{ep}</code>.</p>
</div>
<noscript><p class="lg-message">GraphiQL needs JavaScript. The GraphQL endpoint is
<code>{ep}</code>.</p></noscript>
<script src="{assets}react.production.min.js?v={v}"></script>
<script src="{assets}react-dom.production.min.js?v={v}"></script>
<script src="{assets}graphiql.min.js?v={v}"></script>
<script src="{assets}lifeguard-graphiql.js?v={v}"></script>
</body>
</html>
"#
    )
}

/// A token for the asset URLs that changes with the pinned versions and the start-up script,
/// so that a browser holding cached assets fetches the new ones after an upgrade (the path
/// is matched without the query, so the name is unchanged).
fn asset_version(stamp: &str, js: &str, css: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (stamp, js, css).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Escapes text for an HTML text node or a quoted attribute value.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Where the GraphiQL assets are read from (a directory filled by scripts/graphiql-assets).
///
/// Files are read on each [`Assets::get`], so assets installed while the service runs are
/// served without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assets {
    dir: PathBuf,
}

impl Assets {
    /// Assets read from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Assets {
        Assets { dir: dir.into() }
    }

    /// `$LIFEGUARD_GRAPHIQL_DIR` when set and not empty. Otherwise `target/graphiql-assets`
    /// in the nearest directory that has one, searched from the current directory upwards,
    /// then from the running executable's directory upwards (a service started from
    /// elsewhere still finds its checkout's `target/`). When none has it, the current
    /// directory's `target/graphiql-assets`, where the script would install them; the page
    /// then says how to.
    pub fn from_env() -> Assets {
        let cwd = std::env::current_dir().unwrap_or_default();
        let exe = std::env::current_exe().ok();
        Assets::new(locate(
            std::env::var_os("LIFEGUARD_GRAPHIQL_DIR"),
            &cwd,
            exe.as_deref(),
        ))
    }

    /// The directory the assets are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The asset `name` (only the fixed allow-list of file names, never a path from the
    /// client: no traversal) as (content type, bytes); None when unknown or not installed.
    ///
    /// The start-up script and its styles are compiled in and always served; the vendored
    /// files are served only when [`Assets::installed`], so a stale install of other
    /// versions is not mixed with this page.
    pub fn get(&self, name: &str) -> Option<(&'static str, Vec<u8>)> {
        if let Some((_, content_type, body)) = BUILT_IN.iter().find(|(n, _, _)| *n == name) {
            return Some((content_type, body.as_bytes().to_vec()));
        }
        let (file, content_type) = VENDORED.iter().find(|(n, _)| *n == name)?;
        if !self.stamp_matches() {
            return None;
        }
        std::fs::read(self.dir.join(file))
            .ok()
            .map(|bytes| (*content_type, bytes))
    }

    /// Whether the assets are installed (the page then says how to install them instead
    /// of showing a blank screen): every vendored file is there, and the directory's
    /// `VERSIONS` names the versions this page is written for.
    pub fn installed(&self) -> bool {
        self.stamp_matches() && VENDORED.iter().all(|(n, _)| self.dir.join(n).is_file())
    }

    fn stamp_matches(&self) -> bool {
        std::fs::read_to_string(self.dir.join(STAMP_FILE)).is_ok_and(|s| s == STAMP)
    }
}

/// [`Assets::from_env`]'s choice, from its inputs.
fn locate(env: Option<OsString>, cwd: &Path, exe: Option<&Path>) -> PathBuf {
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe_dir = exe.and_then(Path::parent);
    [Some(cwd), exe_dir]
        .into_iter()
        .flatten()
        .flat_map(Path::ancestors)
        .map(|d| d.join("target").join("graphiql-assets"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| cwd.join("target").join("graphiql-assets"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system's temp directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "lg-graphiql-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Fills `dir` as scripts/graphiql-assets would, each file holding its own name.
    fn install(dir: &Path) {
        for (name, _) in VENDORED {
            std::fs::write(dir.join(name), name).unwrap();
        }
        std::fs::write(dir.join(STAMP_FILE), STAMP).unwrap();
    }

    /// Every `src="..."` and `href="..."` value of the page.
    fn urls(page: &str) -> Vec<String> {
        let mut out = Vec::new();
        for attr in ["src=\"", "href=\""] {
            for (at, _) in page.match_indices(attr) {
                let rest = &page[at + attr.len()..];
                out.push(rest[..rest.find('"').unwrap()].to_string());
            }
        }
        out
    }

    #[test]
    fn page_loads_every_asset_from_the_endpoint_and_nothing_else() {
        let page = page("/graphql");
        let mut urls = urls(&page);
        // The empty icon keeps the browser from asking the service for /favicon.ico.
        urls.retain(|u| u != "data:,");
        assert_eq!(urls.len(), VENDORED.len() + BUILT_IN.len(), "{urls:?}");
        let v = asset_version(STAMP, START_JS, START_CSS);
        for url in &urls {
            let name = url
                .strip_prefix("/graphql/assets/")
                .and_then(|u| u.strip_suffix(&format!("?v={v}")))
                .unwrap_or_else(|| panic!("{url} is not /graphql/assets/NAME?v={v}"));
            assert!(
                Assets::new("/nonexistent").get(name).is_some()
                    || VENDORED.iter().any(|(n, _)| *n == name),
                "{name} is not on the allow-list"
            );
        }
        for (name, _) in VENDORED {
            assert!(
                urls.contains(&format!("/graphql/assets/{name}?v={v}")),
                "{name}"
            );
        }
        assert!(!page.contains("http:") && !page.contains("https:") && !page.contains("//"));
        assert!(page.contains("data-endpoint=\"/graphql\""));
    }

    #[test]
    fn page_has_no_inline_script_or_handler() {
        let page = page("/graphql");
        for (at, _) in page.match_indices("<script") {
            let tag = &page[at..at + page[at..].find('>').unwrap()];
            assert!(tag.contains(" src=\""), "inline script: {tag}");
            assert!(page[at..].starts_with(&format!("{tag}></script>")));
        }
        assert!(!page.contains("<style"));
        for word in page.split(|c: char| c.is_whitespace() || c == '<') {
            let handler = word.starts_with("on") && word.contains('=');
            assert!(!handler, "event handler attribute: {word}");
        }
        assert!(!page.contains("javascript:"));
        assert!(page.contains("script-src 'self'") && page.contains("connect-src 'self'"));
    }

    #[test]
    fn page_escapes_the_endpoint() {
        let page = page("/q\"><script src=x></script>&'");
        assert!(!page.contains("<script src=x>"));
        assert!(page.contains(
            "data-endpoint=\"/q&quot;&gt;&lt;script src=x&gt;&lt;/script&gt;&amp;&#39;\""
        ));
        assert!(page.contains(
            "src=\"/q&quot;&gt;&lt;script src=x&gt;&lt;/script&gt;&amp;&#39;/assets/graphiql.min.js?v="
        ));
    }

    #[test]
    fn page_trims_a_trailing_slash_before_the_assets() {
        assert!(page("/api/graphql/").contains("src=\"/api/graphql/assets/graphiql.min.js?v="));
        assert!(page("/").contains("src=\"/assets/graphiql.min.js?v="));
    }

    #[test]
    fn asset_urls_change_with_the_pins_and_the_start_up_script() {
        let v = asset_version(STAMP, START_JS, START_CSS);
        assert_eq!(v.len(), 16);
        assert_ne!(v, asset_version("graphiql@3.8.3\n", START_JS, START_CSS));
        assert_ne!(v, asset_version(STAMP, "", START_CSS));
        assert_ne!(v, asset_version(STAMP, START_JS, ""));
        assert!(page("/graphql").contains(&format!("graphiql.min.js?v={v}\"")));
    }

    #[test]
    fn installed_assets_are_served_with_their_content_types() {
        let tmp = TempDir::new();
        let assets = Assets::new(&tmp.0);
        assert!(!assets.installed());
        assert_eq!(assets.get("graphiql.min.js"), None);
        install(&tmp.0);
        assert!(assets.installed());
        for (name, content_type) in VENDORED {
            assert_eq!(
                assets.get(name),
                Some((content_type, name.as_bytes().to_vec()))
            );
        }
        assert_eq!(assets.get("graphiql.min.css").unwrap().0, CSS);
        assert_eq!(assets.get("graphiql.min.js").unwrap().0, JS);
    }

    #[test]
    fn built_in_assets_are_served_when_nothing_is_installed() {
        let assets = Assets::new("/nonexistent/graphiql-assets");
        assert!(!assets.installed());
        let (content_type, body) = assets.get("lifeguard-graphiql.js").unwrap();
        assert_eq!(content_type, JS);
        assert!(String::from_utf8(body).unwrap().contains("lg-missing"));
        assert_eq!(assets.get("lifeguard-graphiql.css").unwrap().0, CSS);
    }

    #[test]
    fn other_versions_count_as_not_installed() {
        let tmp = TempDir::new();
        install(&tmp.0);
        std::fs::write(tmp.0.join(STAMP_FILE), "graphiql@2.4.7 react@17.0.2\n").unwrap();
        let assets = Assets::new(&tmp.0);
        assert!(!assets.installed());
        assert_eq!(assets.get("graphiql.min.js"), None);
        std::fs::write(tmp.0.join(STAMP_FILE), STAMP).unwrap();
        std::fs::remove_file(tmp.0.join("react.production.min.js")).unwrap();
        assert!(!assets.installed());
    }

    #[test]
    fn only_allow_listed_names_are_served() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("assets");
        std::fs::create_dir(&dir).unwrap();
        install(&dir);
        std::fs::write(tmp.0.join("secret.txt"), "secret").unwrap();
        std::fs::write(dir.join("extra.js"), "extra").unwrap();
        std::fs::write(dir.join("graphiql.min.js.map"), "map").unwrap();
        let assets = Assets::new(&dir);
        for name in [
            "",
            ".",
            "..",
            "../secret.txt",
            "..%2Fsecret.txt",
            "/etc/passwd",
            &tmp.0.join("secret.txt").display().to_string(),
            "graphiql.min.js/../../secret.txt",
            "./graphiql.min.js",
            "GRAPHIQL.MIN.JS",
            "graphiql.min.js\0",
            "extra.js",
            "graphiql.min.js.map",
            STAMP_FILE,
        ] {
            assert_eq!(assets.get(name), None, "{name:?}");
        }
    }

    #[test]
    fn locate_prefers_the_environment_then_the_nearest_target() {
        let tmp = TempDir::new();
        let ws = tmp.0.join("ws");
        let crate_dir = ws.join("crate").join("src");
        let found = ws.join("target").join("graphiql-assets");
        std::fs::create_dir_all(&crate_dir).unwrap();
        let env = Some(OsString::from("/opt/graphiql"));
        assert_eq!(locate(env, &crate_dir, None), Path::new("/opt/graphiql"));
        // Nothing installed anywhere: where the script would put them, from the current dir.
        let none = locate(Some(OsString::new()), &crate_dir, None);
        assert_eq!(none, crate_dir.join("target").join("graphiql-assets"));
        std::fs::create_dir_all(&found).unwrap();
        assert_eq!(locate(None, &crate_dir, None), found);
        let elsewhere = tmp.0.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let exe = ws.join("target").join("debug").join("example-service");
        assert_eq!(locate(None, &elsewhere, Some(&exe)), found);
    }

    #[test]
    fn the_script_installs_the_versions_the_page_expects() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/graphiql-assets");
        let script = std::fs::read_to_string(script).unwrap();
        for pin in STAMP.split_whitespace() {
            let (package, version) = pin.rsplit_once('@').unwrap();
            let var = package.replace('-', "_").to_uppercase();
            assert!(
                script.contains(&format!("\n{var}_VERSION={version}\n")),
                "scripts/graphiql-assets does not pin {pin}"
            );
        }
        assert!(script.contains(STAMP_FILE));
        for (name, _) in VENDORED {
            assert!(
                script.contains(name),
                "scripts/graphiql-assets does not copy {name}"
            );
        }
    }
}
