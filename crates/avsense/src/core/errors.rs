//! Errors as one line for reports and events: the error and every source below it, joined
//! with `: ` (each level's message names its own context only, so nothing repeats), with
//! line breaks folded.

/// `err` and its sources as one line.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    fold(&s)
}

/// `text` with its line breaks folded into ` | ` and runs of blanks kept as they are.
pub fn fold(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("sink {target}")]
    struct Outer {
        target: String,
        source: std::io::Error,
    }

    #[test]
    fn the_chain_is_one_line_without_repeats() {
        let e = Outer {
            target: "/dev/full".into(),
            source: std::io::Error::other("no space\nleft"),
        };
        assert_eq!(one_line(&e), "sink /dev/full: no space | left");
    }
}
