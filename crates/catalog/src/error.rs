//! What is wrong with a catalog: every problem found, each with its file, line, key and
//! reason, printed `file:line: key: reason` (the form editors and CI logs link).

use serde::{Deserialize, Serialize};

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Path of the file in the repository.
    pub file: String,
    /// 1-based; 0 when the file itself is the problem (missing, unreadable).
    pub line: usize,
    /// Key path (`apps[3].pipeline`); empty for a file-level problem.
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.key.is_empty()) {
            (0, true) => write!(f, "{}: {}", self.file, self.reason),
            (0, false) => write!(f, "{}: {}: {}", self.file, self.key, self.reason),
            (line, true) => write!(f, "{}:{line}: {}", self.file, self.reason),
            (line, false) => write!(f, "{}:{line}: {}: {}", self.file, self.key, self.reason),
        }
    }
}

/// A catalog that does not validate: all its problems, in file and line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid(pub Vec<Problem>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
