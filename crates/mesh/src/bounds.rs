//! How large an event may be, and the helpers producers use to stay within it.
//!
//! Every event body is at most [`MAX_EVENT_BYTES`], whatever the input that caused it: a
//! push of 2,048 commits, a build failure with megabytes of output, a chat message. A
//! producer shapes its payload with the caps it knows ([`cap_text`], [`cap_list`]) and keeps
//! the rest elsewhere (a push's whole body in the [`ORIGINALS_BUCKET`] object store, a build's
//! whole log in its log bucket); [`crate::prepare_with_id`] refuses anything larger, so a
//! producer that forgot a cap gets an error where it builds the event, not a message that no
//! NATS server will take. NATS' own default `max_payload` is 1 MiB; the bound leaves room for
//! the headers and for servers configured lower.

/// The largest event body Slipway publishes, in bytes.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// What the CloudEvents headers of one event may add to its body on the wire (ids, subject,
/// source, time, trace context): all of them are validated names or fixed-size values.
pub const MAX_HEADER_BYTES: usize = 4 * 1024;

/// The JetStream object store bucket holding whole delivery bodies by delivery id.
pub const ORIGINALS_BUCKET: &str = "slipway-deliveries";

/// Cuts `text` to at most `max` bytes at a character boundary. True when it was cut.
pub fn cap_text(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

/// A copy of `text` cut as [`cap_text`] cuts, with `…` appended when it was cut.
pub fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    if cap_text(&mut out, max.saturating_sub('…'.len_utf8())) {
        out.push('…');
    }
    out
}

/// Keeps at most `max_items` entries of `list` whose total length stays within `max_bytes`,
/// each entry at most `max_item` bytes (longer ones are dropped, not cut: a cut path or line
/// would read as a different one). Returns how many were dropped.
pub fn cap_list(list: &mut Vec<String>, max_items: usize, max_item: usize, max_bytes: &mut usize) -> usize {
    let before = list.len();
    let mut kept = 0;
    list.retain(|item| {
        let keep = kept < max_items && item.len() <= max_item && item.len() <= *max_bytes;
        if keep {
            kept += 1;
            *max_bytes -= item.len();
        }
        keep
    });
    before - list.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        let mut s = "aé".repeat(10);
        assert!(cap_text(&mut s, 5));
        assert_eq!(s, "aéa", "byte 5 is inside the second 'é' (4..6): cut before it");
        let mut short = "abc".to_owned();
        assert!(!cap_text(&mut short, 3));
        assert_eq!(capped("abcdef", 5), "ab…");
        assert!(capped("abcdef", 5).len() <= 5);
        assert_eq!(capped("abc", 5), "abc");
    }

    #[test]
    fn lists_keep_within_count_item_and_total_budgets() {
        let mut list: Vec<String> = ["a", "bbbbbbbb", "cc", "dd", "ee"].iter().map(|s| s.to_string()).collect();
        let mut budget = 5;
        let dropped = cap_list(&mut list, 10, 4, &mut budget);
        assert_eq!(list, ["a", "cc", "dd"], "the long item and what exceeds the budget are dropped");
        assert_eq!((dropped, budget), (2, 0));
        let mut many: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let mut budget = usize::MAX;
        assert_eq!(cap_list(&mut many, 10, 10, &mut budget), 90);
    }
}
