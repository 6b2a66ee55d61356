//! `vigil up`'s Prometheus page, fetched and read: the samples of a counter or gauge added up
//! over the series whose labels match, a histogram (count, sum, cumulative buckets) and its
//! change between two scrapes, and the gateway's `vigil_gateway_*` series. The text format is
//! parsed by `prometheus-parse`; a page it cannot read counts as no page.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::util::http_get;

/// Labels a series must carry, each `(name, value)`.
pub type Labels<'a> = [(&'a str, &'a str)];

/// The samples of a page (empty when it is not the Prometheus text format).
fn samples(page: &str) -> Vec<prometheus_parse::Sample> {
    Scrape::parse(page.lines().map(|l| Ok(l.to_owned())))
        .map(|s| s.samples)
        .unwrap_or_default()
}

fn matches(sample: &prometheus_parse::Sample, labels: &Labels) -> bool {
    labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
}

/// A counter's, gauge's or untyped sample's value.
fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// The `vigil_gateway_*` samples of a Prometheus page, by series (`name{labels}`).
pub fn gateway_metrics(page: &str) -> BTreeMap<String, f64> {
    samples(page)
        .into_iter()
        .filter(|s| s.metric.starts_with("vigil_gateway_"))
        .filter_map(|s| {
            let v = scalar(&s.value)?;
            let series = if s.labels.is_empty() {
                s.metric
            } else {
                format!("{}{{{}}}", s.metric, s.labels)
            };
            Some((series, v))
        })
        .collect()
}

/// Scrapes `url` for the gateway's metrics; empty (with a note on stderr) if it fails.
pub async fn scrape(url: Option<&str>) -> BTreeMap<String, f64> {
    scrape_page(url)
        .await
        .map_or_else(BTreeMap::new, |page| gateway_metrics(&page))
}

/// The whole Prometheus page at `url`; `None` (with a note on stderr) if it fails.
pub async fn scrape_page(url: Option<&str>) -> Option<String> {
    let url = url?;
    match http_get(url, Duration::from_secs(5)).await {
        Ok((200, body)) => Some(body),
        Ok((status, _)) => {
            eprintln!("vigil-bench: GET {url} answered {status}");
            None
        }
        Err(e) => {
            eprintln!("vigil-bench: {e:#}");
            None
        }
    }
}

/// One Prometheus histogram (or the change of one between two scrapes): sample count, sum and
/// cumulative buckets `(le, count)` in ascending `le`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromHistogram {
    /// Observations.
    pub count: f64,
    /// Sum of the observations.
    pub sum: f64,
    /// Cumulative counts per upper bound (`+Inf` as `f64::INFINITY`).
    pub buckets: Vec<(f64, f64)>,
}

impl PromHistogram {
    /// Reads histogram `name` from a Prometheus page, adding up every series whose labels
    /// include all of `labels` (e.g. `("service", "incidents")`). `None` when there is none.
    pub fn read(page: &str, name: &str, labels: &Labels) -> Option<Self> {
        let mut h = Self::default();
        let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
        let mut found = false;
        let (count, sum) = (format!("{name}_count"), format!("{name}_sum"));
        for s in samples(page).iter().filter(|s| matches(s, labels)) {
            match &s.value {
                Value::Histogram(counts) if s.metric == name => {
                    for b in counts.iter().filter(|b| !b.less_than.is_nan()) {
                        *buckets.entry(b.less_than.to_bits()).or_default() += b.count;
                    }
                }
                v if s.metric == count => {
                    if let Some(v) = scalar(v) {
                        h.count += v;
                        found = true;
                    }
                }
                v if s.metric == sum => h.sum += scalar(v).unwrap_or(0.0),
                _ => {}
            }
        }
        let mut b: Vec<(f64, f64)> = buckets
            .into_iter()
            .map(|(k, v)| (f64::from_bits(k), v))
            .collect();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        h.buckets = b;
        found.then_some(h)
    }

    /// What was observed between `before` and `self` (a later scrape of the same process).
    pub fn since(&self, before: Option<&Self>) -> Self {
        let Some(b) = before else {
            return self.clone();
        };
        Self {
            count: self.count - b.count,
            sum: self.sum - b.sum,
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| {
                    let old = b
                        .buckets
                        .iter()
                        .find(|(l, _)| *l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (le, c - old)
                })
                .collect(),
        }
    }

    /// Mean observation (`NaN` without observations).
    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            f64::NAN
        }
    }

    /// The upper bound of the bucket holding quantile `q`: "the q-quantile is ≤ this".
    pub fn quantile_bound(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return f64::NAN;
        }
        let rank = q * self.count;
        self.buckets
            .iter()
            .find(|&&(_, c)| c >= rank)
            .map_or(f64::INFINITY, |&(le, _)| le)
    }
}

/// The sum of every sample of counter/gauge `name` whose labels include all of `labels`.
pub fn prom_sum(page: &str, name: &str, labels: &Labels) -> Option<f64> {
    samples(page)
        .iter()
        .filter(|s| s.metric == name && matches(s, labels))
        .filter_map(|s| scalar(&s.value))
        .fold(None, |total, v| Some(total.unwrap_or(0.0) + v))
}

/// The value of every series of counter/gauge `name`.
pub fn prom_values(page: &str, name: &str) -> Vec<f64> {
    samples(page)
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| scalar(&s.value))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn metrics_lines_are_read() {
        let page = "# HELP x\nvigil_gateway_connections 12\nvigil_gateway_resyncs_total 3\nother 1\nvigil_gateway_x{a=\"b c\"} 2.5\n";
        let m = gateway_metrics(page);
        assert_eq!(m.get("vigil_gateway_connections"), Some(&12.0));
        assert_eq!(m.get("vigil_gateway_resyncs_total"), Some(&3.0));
        assert_eq!(m.get("vigil_gateway_x{a=\"b c\"}"), Some(&2.5));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn prometheus_histograms_are_read_and_subtracted() {
        let page = "# TYPE vigil_command_seconds histogram\n\
vigil_command_seconds_bucket{service=\"incidents\",command=\"report\",le=\"0.001\"} 2\n\
vigil_command_seconds_bucket{service=\"incidents\",command=\"report\",le=\"0.01\"} 9\n\
vigil_command_seconds_bucket{service=\"incidents\",command=\"report\",le=\"+Inf\"} 10\n\
vigil_command_seconds_sum{service=\"incidents\",command=\"report\"} 0.05\n\
vigil_command_seconds_count{service=\"incidents\",command=\"report\"} 10\n\
vigil_command_seconds_count{service=\"levels\",command=\"set\"} 3\n\
vigil_store_head_position 42\n";
        let h = PromHistogram::read(page, "vigil_command_seconds", &[("service", "incidents")])
            .unwrap();
        assert_eq!(h.count, 10.0);
        assert!((h.mean() - 0.005).abs() < 1e-12);
        assert_eq!(h.quantile_bound(0.5), 0.01);
        assert_eq!(h.quantile_bound(0.99), f64::INFINITY);
        let before = PromHistogram {
            count: 2.0,
            sum: 0.001,
            buckets: vec![(0.001, 2.0), (0.01, 2.0), (f64::INFINITY, 2.0)],
        };
        let d = h.since(Some(&before));
        assert_eq!(d.count, 8.0);
        assert_eq!(d.quantile_bound(0.5), 0.01);
        assert_eq!(prom_sum(page, "vigil_store_head_position", &[]), Some(42.0));
        assert_eq!(prom_sum(page, "vigil_store_head", &[]), None);
    }

    #[test]
    fn the_page_vigil_up_serves_is_read() {
        let handle = runtime::telemetry::install_metrics().unwrap();
        let labels = [("service", "incidents"), ("command", "report")];
        let h = metrics::histogram!("vigil_command_seconds", &labels[..]);
        for s in [0.003, 0.003, 0.2] {
            h.record(s);
        }
        metrics::histogram!("vigil_command_seconds", "service" => "levels", "command" => "set")
            .record(1.0);
        metrics::gauge!("vigil_store_head_position").set(42.0);
        metrics::gauge!("vigil_consumer_position", "consumer" => "clearances").set(7.0);
        metrics::gauge!("vigil_consumer_position", "consumer" => "surge").set(9.0);
        metrics::counter!("vigil_gateway_frames_sent_total").increment(5);
        let page = handle.render();
        let h = PromHistogram::read(&page, "vigil_command_seconds", &labels).unwrap();
        assert_eq!(h.count, 3.0, "{page}");
        assert!((h.sum - 0.206).abs() < 1e-9, "{page}");
        assert_eq!(h.quantile_bound(0.5), 0.005, "{page}");
        assert_eq!(h.quantile_bound(0.99), 0.25, "{page}");
        assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, 3.0)), "{page}");
        let all = PromHistogram::read(&page, "vigil_command_seconds", &[]).unwrap();
        assert_eq!(all.count, 4.0, "{page}");
        assert_eq!(
            prom_sum(&page, "vigil_store_head_position", &[]),
            Some(42.0)
        );
        assert_eq!(
            prom_sum(&page, "vigil_consumer_position", &[("consumer", "surge")]),
            Some(9.0)
        );
        let mut positions = prom_values(&page, "vigil_consumer_position");
        positions.sort_by(f64::total_cmp);
        assert_eq!(positions, [7.0, 9.0]);
        assert_eq!(
            gateway_metrics(&page).get("vigil_gateway_frames_sent_total"),
            Some(&5.0)
        );
    }
}
