//! Command-line shape of the `vigil` binary, and how flags, environment and the config file
//! combine (flag or environment first, then the file, then the built-in default).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use runtime::config::{self, FileConfig};

/// Vigil: the 24/7 communications and crisis-coordination centre.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, propagate_version = true)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub common: Common,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every command.
#[derive(Debug, Args)]
pub struct Common {
    /// Where all data lives (event log, nats-server config). Default: ./data
    #[arg(long, env = "VIGIL_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// NATS server URL. Default: the one the running `vigil up` recorded in
    /// <data-dir>/nats-url, else nats://127.0.0.1:4290 (the server `vigil up` owns)
    #[arg(long, env = "VIGIL_NATS_URL", global = true)]
    pub nats_url: Option<String>,
    /// Optional TOML config file with the same settings.
    #[arg(long, env = "VIGIL_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// NATS user. Default: this command's own user from <data-dir>/secrets/nats-users.json
    /// (written by `vigil up`), if that file exists. Ignored by `vigil up` unless
    /// --external-nats: the server it owns knows only its own users.
    #[arg(long, env = "VIGIL_NATS_USER", global = true)]
    pub nats_user: Option<String>,
    /// Password of --nats-user (prefer the environment variable: flags show in `ps`).
    #[arg(
        long,
        env = "VIGIL_NATS_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub nats_password: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole centre on this machine: a nats-server of its own, the store, and every
    /// service, all data under --data-dir.
    Up(UpArgs),
    /// Run the store service alone (the event log on fjall behind NATS).
    Store(StoreArgs),
    /// Print committed events as they happen (catching up from --from first).
    Tail(TailArgs),
    /// Append one event from the command line.
    Append(AppendArgs),
    /// Run the gateway alone (HTTP API, live boards over WebSocket, the wall screen).
    Gateway(GatewayArgs),
    /// Run the audit service alone (records refused requests in the log).
    Audit,
    /// Run the incidents service alone (flash reports and what follows).
    Incidents,
    /// Run the security levels service alone.
    Levels,
    /// Run the relocation service alone (relocation and evacuation orders, roll calls).
    Relocation,
    /// Run the surge service alone (surge requests, approvals, officer assignments, deployments).
    Surge,
    /// Run the hostage service alone (cases; details for crisis managers, every read audited).
    Hostage,
    /// Run the clearances service alone (travel security clearances, arrivals, departures).
    Clearances,
    /// Run the broadcast service alone (all-agency alerts: rules, two-person approval,
    /// delivery over NATS and webhooks, CAP feeds, acknowledgements, escalation). Its
    /// configuration file is named by VIGIL_BROADCAST_CONFIG (else the shipped rules).
    Broadcast,
    /// Load reference data (areas, duty stations) from a JSON Lines file into the log, with
    /// progress. Idempotent: loading the same file again changes nothing.
    Import(ImportArgs),
    /// Rebuild the board projections from the whole log, with progress, and print events/s.
    Replay(ReplayArgs),
    /// Check the whole event log under --data-dir (hash chain, positions, indexes) with the
    /// store stopped; exit 1 naming the first broken position if it is damaged.
    Verify(VerifyArgs),
    /// Manage users (stored with argon2 password hashes in <data-dir>/users.json).
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the NATS identities of agency systems (they receive broadcasts on
    /// `vigil.alerts.<agency>`, send receipts and acknowledge); the running `vigil up` picks
    /// up a change without a restart.
    Agency {
        /// What to do.
        #[command(subcommand)]
        command: AgencyCommand,
    },
    /// Run a field site: a nats-server that is a leaf node of the centre and a durable
    /// outbox that forwards what is submitted at the site, in order, exactly once.
    Site(SiteArgs),
    /// Manage the NATS users of field sites at the centre; the running `vigil up` picks up a
    /// change without a restart.
    SiteUser {
        /// What to do.
        #[command(subcommand)]
        command: SiteUserCommand,
    },
    /// A centre of several nodes (docs/CLUSTER.md): the replicas' status, shared secrets.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Manage long-lived API tokens (wall screens, agency systems).
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Write a large, realistic reference dataset for `vigil import` (JSON Lines on stdout):
    /// agencies, areas, duty stations and personnel, the same for the same --seed. Needs no
    /// data directory and no running centre.
    GenReference(GenReferenceArgs),
}

impl Command {
    /// Whether the command folds the log (the gateway's boards, the services' registers), and
    /// so keeps checkpoints in the data directory; the tools (`vigil replay` too) never read
    /// them.
    pub fn folds_log(&self) -> bool {
        matches!(
            self,
            Command::Up(_)
                | Command::Gateway(_)
                | Command::Site(_)
                | Command::Audit
                | Command::Incidents
                | Command::Levels
                | Command::Relocation
                | Command::Surge
                | Command::Hostage
                | Command::Clearances
                | Command::Broadcast
        )
    }

    /// Whether the command is a server that runs until stopped (one that folds the log, or
    /// the store): it holds a descriptor per client, NATS connection and store file.
    pub fn is_server(&self) -> bool {
        self.folds_log() || matches!(self, Command::Store(_) | Command::Site(_))
    }

    /// Whether the command writes the data directory (the log, secrets, users): those refuse
    /// to start when other users can read it (see `runtime::data_dir`).
    pub fn writes_data_dir(&self) -> bool {
        matches!(
            self,
            Command::Up(_)
                | Command::Store(_)
                | Command::Gateway(_)
                | Command::User { .. }
                | Command::Token { .. }
                | Command::Agency { .. }
                | Command::SiteUser { .. }
                | Command::Site(_)
                | Command::Cluster {
                    command: ClusterCommand::Secrets
                }
        )
    }
}

/// `vigil gen-reference`: the size of the dataset.
#[derive(Debug, Args)]
pub struct GenReferenceArgs {
    /// Countries (at most 240).
    #[arg(long, default_value_t = 180)]
    pub countries: usize,
    /// Areas per country.
    #[arg(long, default_value_t = 4)]
    pub areas_per_country: usize,
    /// Duty stations, spread over the countries.
    #[arg(long, default_value_t = 2_000)]
    pub stations: usize,
    /// Personnel, spread over the stations.
    #[arg(long, default_value_t = 150_000)]
    pub personnel: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `vigil user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, or replace one with the same name. Prompts for the password.
    Add {
        /// Login name.
        username: String,
        /// field_officer, duty_officer, crisis_manager, agency_focal_point, wall_screen or admin.
        #[arg(long)]
        role: String,
        /// Country (ISO 3166-1 alpha-2) a field officer is limited to.
        #[arg(long)]
        scope: Option<String>,
        /// Agency of an agency focal point.
        #[arg(long)]
        agency: Option<String>,
        /// Read the password from the first line of stdin instead of prompting (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `vigil agency …`.
#[derive(Debug, Subcommand)]
pub enum AgencyCommand {
    /// Issue a NATS identity (an nkey) for an agency in the reference data and write its
    /// credentials file (mode 0600; the centre keeps only the public key). Issuing again
    /// replaces the older identity.
    Credentials {
        /// The agency id, as in the reference data (e.g. `unicef`).
        agency: String,
        /// Where to write the credentials file. Default: ./<agency>.nats-credentials.json
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke an agency's NATS identity: its live connection is closed and it cannot log in
    /// again until new credentials are issued.
    Revoke {
        /// The agency id.
        agency: String,
    },
    /// List the agencies with a NATS identity.
    List,
}

/// `vigil token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new token, usable as `Authorization: Bearer <token>` and on the WebSocket.
    Create {
        /// The role the token carries.
        #[arg(long)]
        role: String,
        /// Country scope (field officers).
        #[arg(long)]
        scope: Option<String>,
        /// Agency (agency focal points).
        #[arg(long)]
        agency: Option<String>,
        /// Days until it expires.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// A name for it in the audit trail, e.g. "ops-room-screen-2".
        #[arg(long, default_value = "api-token")]
        label: String,
    },
    /// Revoke a token by its id (printed by `create`); takes effect without a restart.
    Revoke {
        /// The token id.
        id: String,
    },
}

/// `vigil gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to serve HTTP and WebSocket on. Default: 127.0.0.1:8080
    #[arg(long = "http", env = "VIGIL_HTTP_ADDR")]
    pub http: Option<String>,
    /// Address of the Prometheus /metrics endpoint (none unless given; never the --http port).
    #[arg(long, env = "VIGIL_METRICS_ADDR")]
    pub metrics: Option<SocketAddr>,
    /// The domain services `/readyz` waits for, comma-separated (`none`: none), where a
    /// centre runs only some of them. Default: all of them.
    #[arg(long = "ready-with", env = "VIGIL_GATEWAY_READY_WITH")]
    pub ready_with: Option<String>,
}

impl GatewayArgs {
    /// The services named by `--ready-with`, each checked to be a domain service.
    pub fn ready_with(&self) -> anyhow::Result<Vec<&'static str>> {
        let all = &runtime::nats_auth::DOMAIN_SERVICES;
        let Some(list) = self.ready_with.as_deref() else {
            return Ok(all.to_vec());
        };
        if list.trim() == "none" {
            return Ok(Vec::new());
        }
        list.split(',')
            .map(|name| {
                let name = name.trim();
                all.iter().find(|s| **s == name).copied().ok_or_else(|| {
                    anyhow::anyhow!(
                        "--ready-with: no domain service {name:?}; name some of {} (comma-separated), or none",
                        all.join(", ")
                    )
                })
            })
            .collect()
    }
}

/// `vigil replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Read the log straight from <data-dir>/store instead of asking the running store over
    /// NATS (the store must be stopped: the directory is locked while it runs).
    #[arg(long)]
    pub from_disk: bool,
}

/// `vigil verify`: reads <data-dir>/store directly, so the store must be stopped (the
/// directory is locked while it runs).
#[derive(Debug, Args)]
pub struct VerifyArgs {}

/// `vigil up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Use the NATS server at --nats-url instead of starting one.
    #[arg(long, env = "VIGIL_EXTERNAL_NATS")]
    pub external_nats: bool,
    /// Address of the Prometheus /metrics endpoint. Default: 127.0.0.1:9490
    #[arg(long, env = "VIGIL_METRICS_ADDR")]
    pub metrics: Option<SocketAddr>,
    /// The gateway's HTTP address (wall screen, API, WebSocket). Default: 127.0.0.1:8080
    #[arg(long = "http", env = "VIGIL_HTTP_ADDR")]
    pub http: Option<String>,
    /// Run as node NAME of a several-node centre (docs/CLUSTER.md): the nats-server it owns
    /// joins the cluster with JetStream, listening for clients at --nats-url, and the store
    /// replicates through the journal. The nodes share one secrets/nats-users.json.
    #[arg(
        long,
        env = "VIGIL_CLUSTER_NODE",
        requires_all = ["cluster_listen", "cluster_routes"],
        conflicts_with = "external_nats"
    )]
    pub cluster_node: Option<String>,
    /// With --cluster-node: HOST:PORT this node's cluster (route) listener binds.
    #[arg(long, env = "VIGIL_CLUSTER_LISTEN", requires = "cluster_node")]
    pub cluster_listen: Option<String>,
    /// With --cluster-node: the other nodes' cluster addresses, HOST:PORT or
    /// nats-route://HOST:PORT, comma-separated (this node's own is skipped).
    #[arg(
        long,
        env = "VIGIL_CLUSTER_ROUTES",
        value_delimiter = ',',
        requires = "cluster_node"
    )]
    pub cluster_routes: Vec<String>,
    /// With --cluster-node: the other nodes' client URLs (nats://HOST:PORT, comma-separated),
    /// which this node's services move to when their own nats-server is gone.
    #[arg(
        long,
        env = "VIGIL_CLUSTER_PEERS_NATS",
        value_delimiter = ',',
        requires = "cluster_node"
    )]
    pub cluster_peers_nats: Vec<String>,
    /// HOST:PORT of a leaf-node listener for field sites (`vigil site`; they log in with
    /// the users `vigil site-user add` issues). Off unless given: it is a port open to the
    /// sites' networks, needed only once there are sites.
    #[arg(long, env = "VIGIL_LEAF_ADDR", conflicts_with = "external_nats")]
    pub leaf_addr: Option<String>,
}

/// `vigil site`.
#[derive(Debug, Args)]
pub struct SiteArgs {
    /// The site's name (as issued by `vigil site-user add`).
    #[arg(long)]
    pub name: String,
    /// The country the site works for (ISO 3166-1 alpha-2, as issued).
    #[arg(long)]
    pub scope: String,
    /// The centre's leaf-node address, nats-leaf://HOST:PORT (its `vigil up --leaf-addr`).
    /// Default: the one in the credentials file.
    #[arg(long, env = "VIGIL_SITE_CENTRE")]
    pub centre: Option<String>,
    /// The site's credentials file (written by `vigil site-user add` at the centre).
    #[arg(long, env = "VIGIL_SITE_CREDENTIALS")]
    pub credentials: PathBuf,
    /// HOST:PORT where the site's own nats-server listens for the site's clients.
    #[arg(long, env = "VIGIL_SITE_LISTEN", default_value = "127.0.0.1:4291")]
    pub listen: String,
    /// HOST:PORT of the site's gateway: the site screen, the field page, the console and the
    /// API, for the site's own users (`vigil user add --data-dir <site dir>`).
    #[arg(long, env = "VIGIL_SITE_HTTP_ADDR", default_value = "127.0.0.1:8291")]
    pub http_addr: SocketAddr,
    /// Address of the Prometheus /metrics endpoint (none unless given).
    #[arg(long, env = "VIGIL_METRICS_ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// `vigil site-user …`.
#[derive(Debug, Subcommand)]
pub enum SiteUserCommand {
    /// Issue the NATS user of a field site (its leaf-node login at this centre) and write its
    /// credentials file (mode 0600). Adding it again replaces the password.
    Add {
        /// The site's name: 1 to 32 of a-z, 0-9 and '-'.
        name: String,
        /// The country it works for (ISO 3166-1 alpha-2).
        #[arg(long)]
        scope: String,
        /// The centre's leaf-node address as the site reaches it, written into the file.
        /// Default: nats-leaf://<--leaf-addr of the running `vigil up`>, when recorded.
        #[arg(long)]
        centre: Option<String>,
        /// Where to write the credentials file. Default: ./<name>.site-credentials.json
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a site's NATS user: it cannot connect again, and the centre refuses whatever it
    /// still sends.
    Revoke {
        /// The site's name.
        name: String,
    },
    /// List the sites and their scopes.
    List,
}

/// `vigil cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Ask every store replica how it stands (for ~1 s), read the leader lease and the
    /// journal's stream info, print a table; exit 1 when no replica answers or none leads.
    Status(ClusterStatusArgs),
    /// Write <data-dir>/secrets/nats-users.json (the services' passwords and the route
    /// password of a cluster) and secrets/token.key (the API tokens' signing key), unless
    /// they are there already; copy both to every node's data directory (mode 0600) before
    /// their first start.
    Secrets,
}

/// `vigil cluster status`.
#[derive(Debug, Args)]
pub struct ClusterStatusArgs {
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// How long to collect the replicas' answers, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub wait_ms: u64,
}

/// `vigil store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Address of the Prometheus /metrics endpoint (none unless given).
    #[arg(long, env = "VIGIL_METRICS_ADDR")]
    pub metrics: Option<SocketAddr>,
    /// TEST ONLY: acknowledge appends without fsync. Exists so the crash harness can prove it
    /// detects loss; never use it for real data.
    #[arg(long, hide = true)]
    pub unsafe_no_fsync: bool,
    /// Run as the replica NAME of a several-node centre: the log is replicated through a
    /// JetStream journal on the NATS cluster (--nats-url lists its servers, comma-separated)
    /// and only the replica holding the leader lease serves. Without it the store stands
    /// alone, as on one machine.
    #[arg(long, env = "VIGIL_CLUSTER_NODE", value_name = "NAME")]
    pub cluster_node: Option<String>,
}

/// `vigil tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// First position to print (1 = the whole log). Default: only new events.
    #[arg(long)]
    pub from: Option<u64>,
    /// Print each event as one JSON line, exactly as recorded.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events (default: follow until Ctrl-C).
    #[arg(long)]
    pub count: Option<u64>,
}

/// `vigil append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Target stream, `<category>-<uuid>`. Default: a new stream of --category.
    #[arg(long)]
    pub stream: Option<String>,
    /// Category of the new stream when --stream is not given.
    #[arg(long, default_value = "note")]
    pub category: String,
    /// Event type, e.g. IncidentReported.
    #[arg(long = "type")]
    pub event_type: String,
    /// Schema version of the type.
    #[arg(long, default_value_t = 1)]
    pub v: u32,
    /// The event's data as JSON.
    #[arg(long, default_value = "{}")]
    pub data: String,
    /// Event id (the idempotency key). Default: a new UUID.
    #[arg(long)]
    pub id: Option<uuid::Uuid>,
    /// `any`, `no_stream` or a version number.
    #[arg(long, default_value = "any")]
    pub expected_version: String,
    /// Recorded as the actor in the event's meta. Default: $USER.
    #[arg(long)]
    pub actor: Option<String>,
}

/// Settings after flags, environment, file and defaults are combined.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Data directory.
    pub data_dir: PathBuf,
    /// NATS URL.
    pub nats_url: String,
    /// The file's contents.
    pub file: FileConfig,
    /// NATS user and password given as flags or environment.
    pub nats_credentials: Option<(String, String)>,
}

impl Common {
    /// Combines flags/environment with the config file and the defaults. The NATS URL:
    /// flag or environment, then the file, then (when `use_record`: every command but
    /// `vigil up`, which decides it) the one recorded in the data directory by the running
    /// `vigil up` that owns it, then the default.
    pub fn resolve(&self, use_record: bool) -> anyhow::Result<Resolved> {
        let file = config::load(self.config.as_deref())?;
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(config::default_data_dir);
        let nats_url = self
            .nats_url
            .clone()
            .or_else(|| file.nats_url.clone())
            .or_else(|| {
                use_record
                    .then(|| config::recorded_nats_url(&data_dir))
                    .flatten()
            })
            .unwrap_or_else(|| format!("nats://127.0.0.1:{}", config::DEFAULT_NATS_PORT));
        let nats_credentials = match (&self.nats_user, &self.nats_password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => anyhow::bail!("--nats-user and --nats-password go together"),
        };
        Ok(Resolved {
            data_dir,
            nats_url,
            file,
            nats_credentials,
        })
    }
}

impl Resolved {
    /// The gateway's address: flag or environment, then the file, then the default.
    pub fn http_addr(&self, flag: Option<&str>) -> anyhow::Result<std::net::SocketAddr> {
        let text = flag
            .map(str::to_owned)
            .or_else(|| self.file.http.clone())
            .unwrap_or_else(|| config::DEFAULT_HTTP.to_owned());
        text.parse()
            .map_err(|_| anyhow::anyhow!("--http {text:?} is not an address like 127.0.0.1:8080"))
    }

    /// The NATS credentials of `user` (a name from `runtime::nats_auth`): --nats-user and
    /// --nats-password when given, else that user's entry in
    /// `<data-dir>/secrets/nats-users.json` when the file exists, else none.
    pub fn nats_credentials_for(&self, user: &str) -> anyhow::Result<Option<(String, String)>> {
        if let Some(given) = &self.nats_credentials {
            return Ok(Some(given.clone()));
        }
        Ok(runtime::nats_auth::load(&self.data_dir)?.and_then(|users| users.credentials(user)))
    }

    /// The gateway's connection limits: the defaults, the file's `[gateway]` over them, the
    /// environment (`VIGIL_HTTP_HEADER_TIMEOUT_SECS`, `VIGIL_MAX_CONNECTIONS`, ...) over that.
    pub fn connection_limits(&self) -> anyhow::Result<gateway::ConnLimits> {
        let mut l = gateway::ConnLimits::default();
        let f = &self.file.gateway;
        let positive = |name: &str, v: u64| {
            if v == 0 {
                anyhow::bail!("[gateway] {name} in the config file must be at least 1");
            }
            Ok(v)
        };
        if let Some(v) = f.header_timeout_secs {
            l.header_timeout = std::time::Duration::from_secs(positive("header_timeout_secs", v)?);
        }
        if let Some(v) = f.keepalive_secs {
            l.keepalive_timeout = std::time::Duration::from_secs(positive("keepalive_secs", v)?);
        }
        if let Some(v) = f.send_buffer_bytes {
            l.send_buffer = Some(
                gateway::send_buffer_bytes(v)
                    .map_err(|e| anyhow::anyhow!("[gateway] send_buffer_bytes: {e}"))?,
            );
        }
        if let Some(v) = f.board_retention_secs {
            l.board_retention = std::time::Duration::from_secs(v);
        }
        if let Some(v) = f.ws_send_timeout_secs {
            l.ws_send_timeout =
                std::time::Duration::from_secs(positive("ws_send_timeout_secs", v)?);
        }
        for (name, value, field) in [
            ("max_connections", f.max_connections, &mut l.max_connections),
            (
                "max_connections_per_address",
                f.max_connections_per_address,
                &mut l.max_connections_per_address,
            ),
            (
                "max_ws_per_address",
                f.max_ws_per_address,
                &mut l.max_ws_per_address,
            ),
            (
                "max_ws_per_token",
                f.max_ws_per_token,
                &mut l.max_ws_per_token,
            ),
        ] {
            if let Some(v) = value {
                positive(name, v as u64)?;
                *field = v;
            }
        }
        l.with_env()
    }

    /// The store's settings under this data directory.
    pub fn store_config(&self) -> store::StoreConfig {
        let mut c = store::StoreConfig::new(self.data_dir.join("store"));
        let f = &self.file.store;
        if let Some(v) = f.max_event_bytes {
            c.limits.max_event_bytes = v;
        }
        if let Some(v) = f.max_append_bytes {
            c.limits.max_append_bytes = v;
        }
        if let Some(v) = f.max_events_per_append {
            c.limits.max_events_per_append = v;
        }
        if let Some(v) = f.max_group_events {
            c.max_group_events = v.clamp(1, 10_000);
        }
        if let Some(v) = f.journal_batch_groups {
            c.journal_batch_groups = v.clamp(1, 64);
        }
        c
    }
}

/// `vigil import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The reference file: JSON Lines, one record per line (`{"kind":"area",…}` or
    /// `{"kind":"duty_station",…}`); blank lines and lines starting with `#` are skipped.
    pub file: PathBuf,
    /// Who is importing, for the audit trail. Default: $USER.
    #[arg(long)]
    pub actor: Option<String>,
}
