//! Freeze windows: "no promotions on weekends" or "not after 16:00 Berlin time on Fridays".
//!
//! A window names days of the week, a start and an end time of day (`HH:MM`) and an IANA time
//! zone; an end before the start runs over midnight into the next day. The check is pure: the
//! caller passes the instant, so the domain logic stays testable without a clock.

use chrono::{DateTime, Datelike, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A recurring window in which nothing is promoted (a catalog stage's `freeze`, or
/// `[[pipeline.stages.freeze]]` in the promoter's own config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    /// Days the window starts on: `mon` … `sun`; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Start time of day, `HH:MM`.
    pub start: String,
    /// End time of day, `HH:MM` (exclusive); before `start` means the next day.
    pub end: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Shown in audit rows and replies ("release freeze").
    #[serde(default)]
    pub name: String,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// A window whose fields parsed; built by [`FreezeWindow::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    days: Vec<Weekday>,
    start: NaiveTime,
    end: NaiveTime,
    tz: Tz,
}

impl FreezeWindow {
    /// Checks every field; the error names the field (`days`, `start`, `end`, `time_zone`).
    pub fn validate(&self) -> Result<(), String> {
        self.parse().map(|_| ())
    }

    fn parse(&self) -> Result<Parsed, String> {
        let days = self.days.iter().map(|d| weekday(d)).collect::<Result<Vec<_>, _>>()?;
        let time = |key: &str, v: &str| {
            NaiveTime::parse_from_str(v, "%H:%M").map_err(|_| format!("{key}: {v:?} is not HH:MM"))
        };
        let (start, end) = (time("start", &self.start)?, time("end", &self.end)?);
        if start == end {
            return Err("end: must differ from start".to_owned());
        }
        let tz =
            self.time_zone.parse::<Tz>().map_err(|_| format!("time_zone: {:?} is not an IANA zone", self.time_zone))?;
        Ok(Parsed { days, start, end, tz })
    }

    /// True when `at` falls inside this window. An invalid window (config validation rejects
    /// those) never matches.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let Ok(p) = self.parse() else { return false };
        let local = at.with_timezone(&p.tz);
        let (day, time) = (local.weekday(), local.time());
        let starts_on = |d: Weekday| p.days.is_empty() || p.days.contains(&d);
        if p.start < p.end {
            starts_on(day) && time >= p.start && time < p.end
        } else {
            // Over midnight: the evening part of a start day, or the morning after one.
            (starts_on(day) && time >= p.start) || (starts_on(day.pred()) && time < p.end)
        }
    }

    /// How the window reads in an audit row.
    pub fn label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        let days = if self.days.is_empty() { "daily".to_owned() } else { self.days.join(",") };
        format!("{days} {}-{} {}", self.start, self.end, self.time_zone)
    }
}

fn weekday(day: &str) -> Result<Weekday, String> {
    Ok(match day.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return Err(format!("days: {day:?} is not a day (mon … sun)")),
    })
}

/// The first of `windows` that contains `at`.
pub fn active(windows: &[FreezeWindow], at: DateTime<Utc>) -> Option<&FreezeWindow> {
    windows.iter().find(|w| w.contains(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str, tz: &str) -> FreezeWindow {
        FreezeWindow {
            days: days.iter().map(|d| (*d).to_owned()).collect(),
            start: start.into(),
            end: end.into(),
            time_zone: tz.into(),
            name: String::new(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn weekday_window_in_a_time_zone() {
        // Friday 16:00-23:59 in Berlin (UTC+1 in November).
        let w = window(&["fri"], "16:00", "23:59", "Europe/Berlin");
        assert!(w.contains(at("2026-11-27T15:30:00Z")), "16:30 Berlin on a Friday");
        assert!(!w.contains(at("2026-11-27T14:30:00Z")), "15:30 Berlin");
        assert!(!w.contains(at("2026-11-26T15:30:00Z")), "a Thursday");
    }

    #[test]
    fn windows_over_midnight_reach_into_the_next_day() {
        let w = window(&["fri"], "22:00", "06:00", "UTC");
        assert!(w.contains(at("2026-11-27T23:00:00Z")), "Friday night");
        assert!(w.contains(at("2026-11-28T05:59:00Z")), "Saturday morning");
        assert!(!w.contains(at("2026-11-28T06:00:00Z")), "end is exclusive");
        assert!(!w.contains(at("2026-11-27T05:00:00Z")), "Friday morning belongs to Thursday");
    }

    #[test]
    fn every_day_when_no_days_are_named() {
        let w = window(&[], "00:00", "23:59", "UTC");
        assert!(w.contains(at("2026-11-24T12:00:00Z")));
        assert_eq!(active(std::slice::from_ref(&w), at("2026-11-24T12:00:00Z")), Some(&w));
    }

    #[test]
    fn invalid_fields_are_named() {
        assert!(window(&["fry"], "10:00", "11:00", "UTC").validate().unwrap_err().starts_with("days"));
        assert!(window(&[], "25:00", "11:00", "UTC").validate().unwrap_err().starts_with("start"));
        assert!(window(&[], "10:00", "10:00", "UTC").validate().unwrap_err().starts_with("end"));
        assert!(window(&[], "10:00", "11:00", "Mars/Olympus").validate().unwrap_err().starts_with("time_zone"));
        assert!(!window(&[], "10:00", "11:00", "Mars/Olympus").contains(at("2026-11-24T10:30:00Z")));
    }
}
