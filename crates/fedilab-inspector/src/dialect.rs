//! What implementations say beyond an activity's type, read from the same
//! documents as the rest of the analysis, for the `detail` of an exchange:
//! Misskey's reactions (a `Like` carrying `_misskey_reaction`, or its
//! `content`), `EmojiReact` (Pleroma, Akkoma and Misskey accept it), quotes
//! (`_misskey_quote`, `quoteUrl`, `quoteUri`, FEP-e232's `quote`), and a
//! fetch refused because it was unsigned (GoToSocial, and Mastodon with
//! `AUTHORIZED_FETCH`, answer 401 to an unsigned GET of an ActivityPub
//! document). Pure; never on the hot path.

use serde_json::Value;

/// The detail of an inbox POST's activity `doc`, if an implementation
/// extension says more than the type.
pub(crate) fn of_activity(doc: &Value) -> Option<String> {
    let kind = doc.get("type").and_then(Value::as_str).unwrap_or("");
    let text = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match kind {
        "Like" => text("_misskey_reaction")
            .or_else(|| text("content"))
            .map(|r| format!("reaction {r}")),
        "EmojiReact" => text("content").map(|r| format!("reaction {r}")),
        _ => doc
            .get("object")
            .and_then(quote_of)
            .map(|q| format!("quote of {q}")),
    }
}

/// The quoted post's URL of a Note, under any of the names in use.
fn quote_of(object: &Value) -> Option<String> {
    ["_misskey_quote", "quoteUrl", "quoteUri", "quote"]
        .iter()
        .find_map(|k| object.get(k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// The detail of a fetch answered `status` without a signature on the
/// request: the server requires signed fetches.
pub(crate) fn of_refused_fetch(status: u16, signed: bool) -> Option<String> {
    (!signed && matches!(status, 401 | 403))
        .then(|| format!("refused unsigned ({status}): the server requires signed fetches"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn misskey_reactions_emoji_reacts_and_quotes_are_named() {
        let like = json!({"type": "Like", "object": "https://m/notes/1", "_misskey_reaction": "👍", "content": "👍"});
        assert_eq!(of_activity(&like).as_deref(), Some("reaction 👍"));
        let plain_like = json!({"type": "Like", "object": "https://m/notes/1"});
        assert_eq!(of_activity(&plain_like), None, "a Mastodon favourite");
        let react = json!({"type": "EmojiReact", "content": ":blobcat:"});
        assert_eq!(of_activity(&react).as_deref(), Some("reaction :blobcat:"));
        let quote = json!({"type": "Create", "object": {"type": "Note", "_misskey_quote": "https://m/notes/9", "quoteUrl": "https://m/notes/9"}});
        assert_eq!(
            of_activity(&quote).as_deref(),
            Some("quote of https://m/notes/9")
        );
        let note = json!({"type": "Create", "object": {"type": "Note"}});
        assert_eq!(of_activity(&note), None);
    }

    #[test]
    fn only_unsigned_fetches_refused_with_401_or_403_are_marked() {
        assert!(
            of_refused_fetch(401, false).is_some_and(|d| d.contains("requires signed fetches"))
        );
        assert_eq!(
            of_refused_fetch(401, true),
            None,
            "a signed fetch refused is a verdict matter"
        );
        assert_eq!(of_refused_fetch(404, false), None);
    }
}
