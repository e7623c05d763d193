//! The registry's `WWW-Authenticate` answer to a 401, read into what to send next: `Basic`
//! (the credentials on every request, as `docker-registry` with htpasswd asks) or `Bearer`
//! (a token fetched from `realm` for `service` and a scope, as Harbor and Docker Hub ask).
//! Pure: parsing only, no I/O.

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// The challenge cdq answers from a `WWW-Authenticate` value: `Bearer` when offered (a
/// token is what a registry that offers it prefers), else `Basic`; None when neither is
/// there or a `Bearer` challenge has no `realm` to fetch a token from.
pub fn parse(header: &str) -> Option<Challenge> {
    let challenges = split(header);
    let bearer = challenges
        .iter()
        .find(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if let Some((_, params)) = bearer {
        let get = |k: &str| {
            params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        return Some(Challenge::Bearer {
            realm: get("realm").filter(|r| !r.is_empty())?,
            service: get("service"),
            scope: get("scope"),
        });
    }
    challenges
        .iter()
        .any(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .then_some(Challenge::Basic)
}

type Params = Vec<(String, String)>;

/// `Scheme k=v, k="v, quoted", Scheme2 k=v` -> [(Scheme, [(k, v), ...]), ...] (RFC 7235:
/// a comma separates parameters and challenges alike; a token not followed by `=` starts
/// the next challenge).
fn split(header: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = vec![];
    let mut rest = header.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let end = rest.find([' ', '\t', ',', '=']).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        if word.is_empty() {
            break;
        }
        let after_ws = after.trim_start_matches([' ', '\t']);
        if let Some(value_start) = after_ws.strip_prefix('=')
            && let Some(current) = out.last_mut()
        {
            let (value, remaining) = value(value_start.trim_start_matches([' ', '\t']));
            current.1.push((word.to_string(), value));
            rest = remaining;
        } else {
            out.push((word.to_string(), vec![]));
            rest = after;
        }
    }
    out
}

/// A parameter value (a quoted string with `\` escapes, or a token) and what follows it.
fn value(text: &str) -> (String, &str) {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut v = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        v.push(escaped);
                    }
                }
                '"' => return (v, &quoted[i + 1..]),
                c => v.push(c),
            }
        }
        (v, "")
    } else {
        let end = text.find([',', ' ', '\t']).unwrap_or(text.len());
        (text[..end].to_string(), &text[end..])
    }
}

/// The token endpoint's answer: Docker's `token`, or OAuth2's `access_token`.
#[derive(Debug, serde::Deserialize)]
pub struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl TokenReply {
    pub fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_as_docker_registry_with_htpasswd_sends_it() {
        assert_eq!(parse("Basic realm=\"cdq-test\""), Some(Challenge::Basic));
        assert_eq!(parse("basic"), Some(Challenge::Basic));
    }

    #[test]
    fn bearer_as_harbor_and_docker_hub_send_it() {
        assert_eq!(
            parse(
                "Bearer realm=\"https://harbor.example.com/service/token\",service=\"harbor-registry\",scope=\"repository:cd/library/redis:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://harbor.example.com/service/token".into(),
                service: Some("harbor-registry".into()),
                scope: Some("repository:cd/library/redis:pull,push".into()),
            })
        );
        assert_eq!(
            parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\""),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn tokens_unquoted_spaces_escapes_and_case() {
        assert_eq!(
            parse("BEARER  Realm = https://h/t , SERVICE=\"a \\\"b\\\", c\""),
            Some(Challenge::Bearer {
                realm: "https://h/t".into(),
                service: Some("a \"b\", c".into()),
                scope: None,
            })
        );
    }

    #[test]
    fn bearer_wins_over_basic_in_one_header() {
        let h = "Basic realm=\"r\", Bearer realm=\"https://h/token\",service=\"s\"";
        assert!(matches!(parse(h), Some(Challenge::Bearer { .. })));
    }

    #[test]
    fn nothing_answerable() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("Negotiate"), None);
        assert_eq!(parse("Bearer service=\"s\""), None, "no realm");
        assert_eq!(parse("Bearer realm=\"\""), None);
    }

    #[test]
    fn token_replies() {
        let t: TokenReply = serde_json::from_str(r#"{"token":"a","expires_in":60}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("a"));
        let t: TokenReply = serde_json::from_str(r#"{"access_token":"b"}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("b"));
        let t: TokenReply = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }
}
