//! Shared by the broadcast service's tests: the in-process centre (`testkit::inproc`: a real
//! nats-server, a real store on disk) with a clock the test moves, agencies registered as
//! `vigil import` registers them, agency systems on NATS that answer each broadcast with its
//! receipt, and the instances of the service, each with its own scheduler.

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use events::domain::DomainEvent;
use events::domain::agency::{self, AgencyRegistered};
use events::domain::relocation::{OrderKind, RelocationOrdered, Scope};
use events::validate::Country;
use events::{RecordedEvent, StreamName};
use futures::StreamExt;
use time::OffsetDateTime;
use uuid::Uuid;
use vigil_broadcast::clock::ManualClock;
use vigil_broadcast::rules::Config;
use vigil_broadcast::{Options, deliver};

/// The centre; the in-process one's helpers through `Deref`.
pub struct Centre {
    inner: testkit::inproc::Centre,
    /// The services' clock, moved by the test.
    pub clock: Arc<ManualClock>,
    options: Options,
}

impl std::ops::Deref for Centre {
    type Target = testkit::inproc::Centre;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl Centre {
    /// A nats-server and a store; the service's instances will run with `config` and a clock
    /// that starts now. No instance runs yet.
    pub async fn start(config: Config) -> Self {
        let inner = testkit::inproc::Centre::start(vigil_broadcast::SERVICE, |nats, dir, stop| {
            store::run(nats, store::StoreConfig::new(dir), stop)
        })
        .await;
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let options = Options {
            config: Arc::new(config),
            clock: clock.clone(),
            tick: Duration::from_millis(50),
        };
        Self {
            inner,
            clock,
            options,
        }
    }

    /// Registers each agency (`name` is its id in capitals) present in its countries.
    pub async fn register_agencies(&self, agencies: &[(&str, &[&str])]) {
        for (a, countries) in agencies {
            let e = AgencyRegistered {
                agency: (*a).into(),
                name: a.to_uppercase(),
                countries: countries
                    .iter()
                    .map(|c| Country::parse(c).unwrap())
                    .collect(),
            };
            self.append_one(agency::stream_for(a), e.into()).await;
        }
    }

    /// Agency systems on NATS: each broadcast on `vigil.alerts.<agency>` is answered with
    /// its receipt, which is what makes it delivered, except by the `silent` agencies.
    pub async fn agency_systems_listen(&self, silent: &[&str]) {
        let client = self.nats().connect().await;
        let mut alerts = client.subscribe("vigil.alerts.*").await.unwrap();
        client.flush().await.unwrap();
        let stop = self.stopping();
        let silent: Vec<String> = silent.iter().map(|a| format!(".{a}")).collect();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = alerts.next() => match m { Some(m) => m, None => return },
                };
                if silent.iter().any(|s| msg.subject.as_str().ends_with(s)) {
                    continue;
                }
                let m: deliver::Message = serde_json::from_slice(&msg.payload).unwrap();
                let receipt = deliver::Receipt {
                    received: m.broadcast,
                };
                if let Some(reply) = msg.reply {
                    let body = serde_json::to_vec(&receipt).unwrap();
                    client.publish(reply, body.into()).await.unwrap();
                }
            }
        });
    }

    /// Appends `event` to `stream` as actor `test`; its id.
    pub async fn append_one(&self, stream: StreamName, event: DomainEvent) -> Uuid {
        self.append(stream, vec![event], "test").await[0]
    }

    /// Starts one more instance of the service.
    pub async fn instance(&mut self) {
        let options = self.options.clone();
        self.inner
            .instance(move |nats, stop| vigil_broadcast::run_with(nats, stop, options))
            .await;
    }

    /// Stops every instance.
    pub fn stop_instances(&mut self) {
        self.inner.stop_instances();
    }

    /// Every event of broadcast `id`.
    pub async fn broadcast(&self, id: Uuid) -> Vec<RecordedEvent> {
        self.stream(&events::domain::broadcast::stream_for(id))
            .await
    }

    /// Lets the schedulers run a few ticks.
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Country `c` (a valid ISO code in the tests).
pub fn country(c: &str) -> Country {
    Country::parse(c).unwrap()
}

/// An evacuation of all personnel of Somalia to Nairobi, due in a day: what the shipped
/// rules broadcast to the country's agencies.
pub fn evacuation() -> RelocationOrdered {
    RelocationOrdered {
        kind: OrderKind::Evacuation,
        country: country("SO"),
        area: None,
        duty_station: None,
        scope: Scope::AllPersonnel,
        destination: "Nairobi".into(),
        deadline: OffsetDateTime::now_utc() + time::Duration::days(1),
    }
}
