//! The job: per-user click counts. Generated click events `(user, page)` are keyed by user; a keyed operator keeps,
//! per user, a `MapState` of clicks per page and a `ValueState` of clicks in all, and emits both counts every time
//! they change; the sink writes them into a key-value table ([`crate::table`]) as cells `(user, page)` and
//! `(user, "total")`.
//!
//! The clicks come from a partitioned, replayable log: [`SequenceSource`] numbers each partition's events and keeps
//! every partition's offset in operator state, and [`click`] turns an offset into its event, from the parameters
//! alone. (A real job would read a Kafka topic here.)

use crate::table::{Cell, TOTAL_COLUMN, TableTransactions};
use engine::api::graph::JobGraph;
use engine::api::{BuildError, JobBuilder};
use engine::config::JobConfig;
use engine::connectors::sequence_source::{SequenceRecord, SequenceSource};
use engine::operators::keyed_process::KeyedProcessFunction;
use engine::operators::two_phase::{TransactionalSink, TwoPhaseCommitSink};
use engine::state::StateError;
use engine::state::backend::KeyedStateBackend;
use engine::state::keyed::{KeyedContext, KeyedEndContext, MapStateDescriptor, ValueStateDescriptor};
use serde::Deserialize;
use std::path::PathBuf;

/// The pages a click can land on; `pages` in the parameters takes the first ones.
pub const PAGES: &[&str] = &["/home", "/search", "/product", "/cart", "/checkout", "/account", "/help", "/about"];

/// The job's parameters, from a scenario's `[job] params`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClicksParams {
    /// Partitions of the click log.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Clicks per partition.
    #[serde(default = "default_clicks")]
    pub clicks: u64,
    /// Distinct users, `u000` on.
    #[serde(default = "default_users")]
    pub users: u32,
    /// Distinct pages, the first of [`PAGES`].
    #[serde(default = "default_pages")]
    pub pages: u32,
    /// Pacing per source subtask, so that the job lasts long enough for faults to land in it; 0 means unpaced.
    #[serde(default)]
    pub clicks_per_second: u64,
}

fn default_partitions() -> u32 {
    4
}

fn default_clicks() -> u64 {
    1000
}

fn default_users() -> u32 {
    32
}

fn default_pages() -> u32 {
    PAGES.len() as u32
}

/// One click event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Click {
    pub user: String,
    pub page: String,
}

/// Click `number` of `partition`: a function of the parameters alone, so every run and the reference model see the
/// same log.
pub fn click(params: &ClicksParams, partition: u32, number: u64) -> Click {
    let (user, page) = click_indices(params, partition, number);
    Click { user: user_key(user), page: PAGES[page].to_string() }
}

/// Click `number` of `partition` as the user's index and the page's index in [`PAGES`].
pub fn click_indices(params: &ClicksParams, partition: u32, number: u64) -> (u32, usize) {
    // splitmix64 of the event's position: well mixed, and no generator state to replay.
    let mut z = (u64::from(partition) << 40 ^ number).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let user = (z % u64::from(params.users)) as u32;
    // Skewed towards the first pages, as real traffic is: the smaller of two draws.
    let pages = u64::from(params.pages);
    let page = ((z >> 32) % pages).min((z >> 48) % pages) as usize;
    (user, page)
}

/// The row key of user `index`.
pub fn user_key(index: u32) -> String {
    format!("u{index:03}")
}

/// What the keyed operator emits for each click: the user's counts after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickCounts {
    pub user: String,
    pub page: String,
    /// The user's clicks on `page`, this one included.
    pub page_clicks: u64,
    /// The user's clicks in all, this one included.
    pub user_clicks: u64,
}

impl ClickCounts {
    /// The two table cells this update writes.
    pub fn cells(self, out: &mut Vec<Cell>) {
        out.push(Cell { row: self.user.clone(), column: self.page, value: self.page_clicks });
        out.push(Cell { row: self.user, column: TOTAL_COLUMN.to_string(), value: self.user_clicks });
    }
}

/// Clicks per page, per user.
const PAGE_CLICKS: MapStateDescriptor<String, u64> = MapStateDescriptor::new("page-clicks");
/// Clicks in all, per user.
const USER_CLICKS: ValueStateDescriptor<u64> = ValueStateDescriptor::new("user-clicks");

/// Counts each user's clicks, per page and in all. Every count lives in keyed state, so a failure loses none.
pub struct CountClicks;

impl KeyedProcessFunction<String, Click, ClickCounts> for CountClicks {
    fn process<B: KeyedStateBackend<String>>(
        &mut self,
        click: Click,
        context: &mut KeyedContext<'_, String, B>,
        out: &mut Vec<ClickCounts>,
    ) -> Result<(), StateError> {
        let mut pages = context.map(&PAGE_CLICKS)?;
        let page_clicks = pages.get(&click.page)?.unwrap_or(0) + 1;
        pages.put(click.page.clone(), page_clicks)?;
        let user_clicks = context.value(&USER_CLICKS)?.update(
            || 0,
            |clicks| {
                *clicks += 1;
                *clicks
            },
        )?;
        out.push(ClickCounts { user: click.user, page: click.page, page_clicks, user_clicks });
        Ok(())
    }

    fn end_of_input<B: KeyedStateBackend<String>>(
        &mut self,
        _context: &mut KeyedEndContext<'_, String, B>,
        _out: &mut Vec<ClickCounts>,
    ) -> Result<(), StateError> {
        // Every count was emitted when it changed: the table holds the final ones already.
        Ok(())
    }
}

/// The job graph, writing into the table at `table`. `sink` wraps the table's transactions into the sink the job
/// uses: the table's own for the job, a broken one for its canary.
pub fn graph<S>(
    name: &str,
    params: &ClicksParams,
    table: PathBuf,
    config: JobConfig,
    sink: impl Fn(TableTransactions) -> S + Send + Sync + 'static,
) -> Result<JobGraph, BuildError>
where
    S: TransactionalSink<Cell>,
{
    let log = params.clone();
    let events = params.clone();
    let job = JobBuilder::new(name, config)?;
    job.source("click-log", move || SequenceSource::paced(log.partitions, log.clicks, log.clicks_per_second))
        .map("to-click", move |record: SequenceRecord| click(&events, record.partition, record.number))
        .key_by_ref(|click: &Click| &click.user)
        .process("count-clicks", || CountClicks)
        .flat_map("to-cells", ClickCounts::cells)
        .sink("table", move || TwoPhaseCommitSink::of(sink(TableTransactions::new(table.clone()))));
    job.build()
}
