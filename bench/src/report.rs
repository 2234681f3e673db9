//! Figures: one JSON line each as soon as measured, a Markdown table at the end.

use serde_json::{json, Value};

/// What a figure should reach, from issue 5.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The value is at least this.
    AtLeast(f64),
    /// The value is at most this.
    AtMost(f64),
    /// The ratio to the floor is at least this.
    RatioAtLeast(f64),
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::AtLeast(x) => format!(">= {} {unit}", number(x)),
            Target::AtMost(x) => format!("<= {} {unit}", number(x)),
            Target::RatioAtLeast(x) => format!("ratio >= {}", number(x)),
        }
    }

    fn met(self, value: f64, ratio: Option<f64>) -> bool {
        match self {
            Target::AtLeast(x) => value >= x,
            Target::AtMost(x) => value <= x,
            Target::RatioAtLeast(x) => ratio.is_some_and(|r| r >= x),
        }
    }
}

pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub floor: Option<f64>,
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub met: Option<bool>,
    pub details: Value,
}

impl Figure {
    /// A figure; `ratio` is value / floor.
    pub fn new(name: &str, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            floor: None,
            ratio: None,
            target: None,
            met: None,
            details: json!({}),
        }
    }

    pub fn floor(mut self, floor: f64) -> Figure {
        self.floor = Some(floor);
        self.ratio = (floor != 0.0).then(|| self.value / floor);
        self
    }

    pub fn target(mut self, target: Target) -> Figure {
        self.target = Some(target.describe(&self.unit));
        self.met = Some(target.met(self.value, self.ratio));
        self
    }

    pub fn details(mut self, details: Value) -> Figure {
        self.details = details;
        self
    }

    pub fn json(&self) -> Value {
        let mut details = self.details.clone();
        if let (Some(target), Value::Object(map)) = (&self.target, &mut details) {
            map.insert("target".into(), json!(target));
            map.insert("met".into(), json!(self.met));
        }
        json!({
            "figure": self.name,
            "value": round(self.value),
            "unit": self.unit,
            "floor": self.floor.map(round),
            "ratio": self.ratio.map(|r| (r * 10_000.0).round() / 10_000.0),
            "details": details,
        })
    }
}

/// Keeps about four significant digits.
pub fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let digits = (3 - x.abs().log10().floor() as i32).max(0);
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// A number for people: thousands separated, about four significant digits.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let x = round(x);
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if x < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else {
        format!("{x}")
    }
}

pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from(
        "| figure | value | unit | floor | ratio | target | met |\n| --- | ---: | --- | ---: | ---: | --- | --- |\n",
    );
    for figure in figures {
        let met = match figure.met {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            figure.name,
            number(figure.value),
            figure.unit,
            figure.floor.map(number).unwrap_or_default(),
            figure
                .ratio
                .map(|r| format!("{:.3}", r))
                .unwrap_or_default(),
            figure.target.clone().unwrap_or_default(),
            met,
        ));
    }
    out
}
