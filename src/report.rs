//! The report: one structure for the scan and one for the enforcement, each rendered as
//! tables for people or as one JSON line for scripts.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::ops::AddAssign;
use std::path::PathBuf;

use serde::Serialize;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::accounts::SkippedAccount;
use crate::enforce::{ChangeResult, Outcome};
use crate::mode::Mode;
use crate::plan::{Change, Status};
use crate::scan::{Access, AccountScan, RegionScan};
use crate::session::CallerIdentity;
use crate::text::{count, sanitize};
use crate::verify::Verification;

/// Counts shown per region, per account and for the whole sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub accounts_scanned: usize,
    pub accounts_skipped: usize,
    pub regions_scanned: usize,
    pub regions_skipped: usize,
    /// Instances by status: `enforced`, `needs_enforcement`, `imds_disabled` and
    /// `not_actionable` add up to `instances`.
    pub instances: usize,
    pub enforced: usize,
    pub needs_enforcement: usize,
    /// Instances the sweep would change: those needing enforcement, and those with the
    /// endpoint disabled and HttpTokens optional.
    pub to_change: usize,
    pub imds_disabled: usize,
    pub not_actionable: usize,
    pub errors: usize,
}

impl AddAssign for Totals {
    fn add_assign(&mut self, other: Totals) {
        self.accounts_scanned += other.accounts_scanned;
        self.accounts_skipped += other.accounts_skipped;
        self.regions_scanned += other.regions_scanned;
        self.regions_skipped += other.regions_skipped;
        self.instances += other.instances;
        self.enforced += other.enforced;
        self.needs_enforcement += other.needs_enforcement;
        self.to_change += other.to_change;
        self.imds_disabled += other.imds_disabled;
        self.not_actionable += other.not_actionable;
        self.errors += other.errors;
    }
}

impl Totals {
    fn of_region(scan: &RegionScan) -> Totals {
        let count = |status| scan.instances.iter().filter(|f| f.status == status).count();
        Totals {
            regions_scanned: 1,
            instances: scan.instances.len(),
            enforced: count(Status::Enforced),
            needs_enforcement: count(Status::NeedsEnforcement),
            to_change: scan.instances.iter().filter(|f| f.change).count(),
            imds_disabled: count(Status::ImdsDisabled),
            not_actionable: count(Status::NotActionable),
            ..Totals::default()
        }
    }

    fn of_account(scan: &AccountScan) -> Totals {
        let mut totals = Totals {
            accounts_scanned: 1,
            regions_skipped: scan.skipped_regions.len(),
            errors: scan.skipped_regions.iter().filter(|s| s.error.is_some()).count(),
            ..Totals::default()
        };
        for region in &scan.regions {
            totals += Totals::of_region(region);
        }
        totals
    }
}

/// The consolidated scan report, grouped by account and then region.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub kind: &'static str,
    pub tool_version: &'static str,
    pub mode: Mode,
    pub caller: CallerIdentity,
    pub dry_run: bool,
    pub accounts: Vec<AccountReport>,
    pub skipped_accounts: Vec<SkippedAccount>,
    pub totals: Totals,
}

/// One account's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    #[serde(flatten)]
    pub scan: AccountScan,
    pub totals: Totals,
}

impl ScanReport {
    /// Builds the report and all its totals from the scans, sorted by account id.
    pub fn new(
        mode: Mode,
        caller: CallerIdentity,
        dry_run: bool,
        mut scans: Vec<AccountScan>,
        mut skipped_accounts: Vec<SkippedAccount>,
    ) -> Self {
        scans.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        skipped_accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        let mut totals = Totals {
            accounts_skipped: skipped_accounts.len(),
            errors: skipped_accounts.iter().filter(|s| s.is_error()).count(),
            ..Totals::default()
        };
        let accounts = scans
            .into_iter()
            .map(|scan| {
                let account_totals = Totals::of_account(&scan);
                totals += account_totals;
                AccountReport { scan, totals: account_totals }
            })
            .collect();
        ScanReport {
            kind: "scan_report",
            tool_version: env!("CARGO_PKG_VERSION"),
            mode,
            caller,
            dry_run,
            accounts,
            skipped_accounts,
            totals,
        }
    }

    /// Every modification the report proposes, in report order.
    pub fn changes(&self) -> Vec<Change> {
        let mut changes = Vec::new();
        for account in &self.accounts {
            for region in &account.scan.regions {
                let findings = region.instances.iter().filter(|f| f.change);
                changes.extend(findings.map(|f| Change {
                    account_id: account.scan.account_id.clone(),
                    region: region.region.clone(),
                    instance_id: f.instance.instance_id.clone(),
                    name: f.instance.name.clone(),
                    http_tokens_before: f.instance.http_tokens.clone().unwrap_or_default(),
                    http_tokens_after: "required".into(),
                }));
            }
        }
        changes
    }

    /// Distinct region names that hold at least one change, in any account.
    pub fn regions_with_changes(&self) -> usize {
        let regions = self.accounts.iter().flat_map(|a| &a.scan.regions);
        let changing = regions.filter(|r| r.instances.iter().any(|f| f.change));
        let names: std::collections::BTreeSet<&str> = changing.map(|r| r.region.as_str()).collect();
        names.len()
    }

    /// Whether some part of the scope could not be scanned.
    pub fn is_partial(&self) -> bool {
        self.totals.regions_skipped > 0 || self.totals.errors > 0
    }

    /// Accounts that hold at least one change.
    pub fn accounts_with_changes(&self) -> usize {
        self.accounts.iter().filter(|a| a.totals.to_change > 0).count()
    }

    /// Tables per account and region, what was skipped and why, and the summary.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        for account in &self.accounts {
            write_account(out, account)?;
        }
        write_skipped_accounts(out, &self.skipped_accounts)?;
        write_skipped_regions(out, &self.accounts)?;
        writeln!(out, "Summary")?;
        writeln!(out, "{}", styled(Table::new([summary_row(&self.totals)])))
    }
}

fn write_account(out: &mut dyn Write, account: &AccountReport) -> io::Result<()> {
    let scan = &account.scan;
    let name = scan.name.as_deref().map(|n| format!(" {}", sanitize(n))).unwrap_or_default();
    let access = match &scan.access {
        Access::CallerCredentials => "caller credentials".to_owned(),
        Access::AssumedRole { role_arn } => format!("assumed role {role_arn}"),
    };
    writeln!(out, "Account {}{name} ({access})", scan.account_id)?;

    let (empty, populated): (Vec<_>, Vec<_>) =
        scan.regions.iter().partition(|r| r.instances.is_empty());
    for region in populated {
        let totals = Totals::of_region(region);
        writeln!(
            out,
            "\n  {}: {}, {} to change",
            region.region,
            count(totals.instances, "instance"),
            totals.to_change
        )?;
        let rows = region.instances.iter().map(InstanceRow::from);
        writeln!(out, "{}", indent(&styled(Table::new(rows)).to_string()))?;
    }
    if !empty.is_empty() {
        // Named in the JSON report; here a count keeps large sweeps readable.
        let others = count(empty.len(), "other region");
        writeln!(out, "\n  {others} scanned: no instances")?;
    }
    if !scan.skipped_regions.is_empty() {
        let skipped = count(scan.skipped_regions.len(), "region");
        writeln!(out, "\n  {skipped} skipped (listed below)")?;
    }
    let totals = &account.totals;
    write!(
        out,
        "\n  Account {}: {}, {} already enforced, {} to change",
        scan.account_id,
        count(totals.instances, "instance"),
        totals.enforced,
        totals.to_change
    )?;
    // Terminated instances, and those with the endpoint off and tokens already required.
    match totals.instances - totals.enforced - totals.to_change {
        0 => writeln!(out, "\n"),
        left => writeln!(out, ", {left} left alone\n"),
    }
}

fn write_skipped_accounts(out: &mut dyn Write, skipped: &[SkippedAccount]) -> io::Result<()> {
    if skipped.is_empty() {
        return Ok(());
    }
    writeln!(out, "Skipped accounts:")?;
    for account in skipped {
        let name =
            account.name.as_deref().map(|n| format!(" ({})", sanitize(n))).unwrap_or_default();
        write!(out, "  {}{name}: {}", account.account_id, sanitize(&account.reason))?;
        match &account.hint {
            Some(hint) => writeln!(out, "; {hint}")?,
            None => writeln!(out)?,
        }
    }
    writeln!(out)
}

fn write_skipped_regions(out: &mut dyn Write, accounts: &[AccountReport]) -> io::Result<()> {
    let skipped: Vec<_> = accounts
        .iter()
        .flat_map(|a| a.scan.skipped_regions.iter().map(move |r| (&a.scan.account_id, r)))
        .collect();
    if skipped.is_empty() {
        return Ok(());
    }
    writeln!(out, "Skipped regions:")?;
    for (account, region) in skipped {
        let hint = region.error.as_ref().and_then(|e| e.hint());
        let hint = hint.map(|h| format!(" ({h})")).unwrap_or_default();
        writeln!(out, "  {account} {}: {}{hint}", region.region, sanitize(&region.reason))?;
    }
    writeln!(out)
}

fn styled(mut table: Table) -> Table {
    table.with(Style::sharp());
    table
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[derive(Tabled)]
struct InstanceRow {
    #[tabled(rename = "instance")]
    instance_id: String,
    name: String,
    state: String,
    #[tabled(rename = "http tokens")]
    http_tokens: String,
    endpoint: String,
    #[tabled(rename = "hop limit")]
    hop_limit: String,
    status: String,
    action: &'static str,
}

impl From<&crate::plan::Finding> for InstanceRow {
    fn from(finding: &crate::plan::Finding) -> Self {
        let instance = &finding.instance;
        let or_dash = |v: Option<&str>| v.map_or_else(|| "-".to_owned(), sanitize);
        InstanceRow {
            instance_id: sanitize(&instance.instance_id),
            name: instance.name.as_deref().map_or_else(|| "-".to_owned(), table_name),
            state: sanitize(&instance.state),
            http_tokens: or_dash(instance.http_tokens.as_deref()),
            endpoint: or_dash(instance.http_endpoint.as_deref()),
            hop_limit: instance.hop_limit.map_or_else(|| "-".to_owned(), |h| h.to_string()),
            status: finding.status.label().to_owned(),
            action: if finding.change { "set required" } else { "-" },
        }
    }
}

/// Name tags can hold 256 characters; the table shows the start, the JSON report all of it.
const NAME_WIDTH: usize = 40;

fn table_name(name: &str) -> String {
    crate::text::truncate(&sanitize(name), NAME_WIDTH)
}

#[derive(Tabled)]
struct SummaryRow {
    #[tabled(rename = "accounts scanned")]
    accounts_scanned: usize,
    #[tabled(rename = "accounts skipped")]
    accounts_skipped: usize,
    #[tabled(rename = "regions scanned")]
    regions_scanned: usize,
    #[tabled(rename = "regions skipped")]
    regions_skipped: usize,
    instances: usize,
    #[tabled(rename = "already enforced")]
    enforced: usize,
    #[tabled(rename = "needs enforcement")]
    needs_enforcement: usize,
    #[tabled(rename = "imds disabled")]
    imds_disabled: usize,
    #[tabled(rename = "not actionable")]
    not_actionable: usize,
    #[tabled(rename = "to change")]
    to_change: usize,
    errors: usize,
}

fn summary_row(t: &Totals) -> SummaryRow {
    SummaryRow {
        accounts_scanned: t.accounts_scanned,
        accounts_skipped: t.accounts_skipped,
        regions_scanned: t.regions_scanned,
        regions_skipped: t.regions_skipped,
        instances: t.instances,
        enforced: t.enforced,
        needs_enforcement: t.needs_enforcement,
        imds_disabled: t.imds_disabled,
        not_actionable: t.not_actionable,
        to_change: t.to_change,
        errors: t.errors,
    }
}

/// What enforcement did, with every failure spelled out.
#[derive(Debug, Clone, Serialize)]
pub struct EnforcementReport {
    pub kind: &'static str,
    pub run_id: String,
    pub journal: PathBuf,
    pub elapsed_seconds: f64,
    pub interrupted: bool,
    pub succeeded: usize,
    pub applied: usize,
    pub pending: usize,
    pub failed: usize,
    pub not_attempted: usize,
    /// The same counts by account, then region, as the scan report groups them.
    pub accounts: Vec<AccountOutcomes>,
    pub failures: Vec<Failure>,
    /// What reading the instances back found; absent when the run was interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// How the changes of one account ended, region by region.
#[derive(Debug, Clone, Serialize)]
pub struct AccountOutcomes {
    pub account_id: String,
    pub regions: Vec<RegionOutcomes>,
    pub totals: OutcomeCounts,
}

/// How the changes of one account-region ended.
#[derive(Debug, Clone, Serialize)]
pub struct RegionOutcomes {
    pub region: String,
    #[serde(flatten)]
    pub counts: OutcomeCounts,
}

/// Changes by how they ended; `succeeded` is `applied` plus `pending`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub succeeded: usize,
    pub applied: usize,
    pub pending: usize,
    pub failed: usize,
    pub not_attempted: usize,
}

impl OutcomeCounts {
    fn add(&mut self, result: &ChangeResult) {
        match result {
            ChangeResult::Applied => self.applied += 1,
            ChangeResult::Pending => self.pending += 1,
            ChangeResult::Failed(_) => self.failed += 1,
            ChangeResult::NotAttempted => self.not_attempted += 1,
        }
        self.succeeded = self.applied + self.pending;
    }
}

impl AddAssign for OutcomeCounts {
    fn add_assign(&mut self, other: OutcomeCounts) {
        self.succeeded += other.succeeded;
        self.applied += other.applied;
        self.pending += other.pending;
        self.failed += other.failed;
        self.not_attempted += other.not_attempted;
    }
}

/// Groups outcomes by account and region, both sorted.
fn by_account(outcomes: &[Outcome]) -> Vec<AccountOutcomes> {
    let mut groups: BTreeMap<&str, BTreeMap<&str, OutcomeCounts>> = BTreeMap::new();
    for outcome in outcomes {
        let change = &outcome.change;
        let regions = groups.entry(&change.account_id).or_default();
        regions.entry(&change.region).or_default().add(&outcome.result);
    }
    groups
        .into_iter()
        .map(|(account, regions)| {
            let mut totals = OutcomeCounts::default();
            let regions = regions
                .into_iter()
                .map(|(region, counts)| {
                    totals += counts;
                    RegionOutcomes { region: region.to_owned(), counts }
                })
                .collect();
            AccountOutcomes { account_id: account.to_owned(), regions, totals }
        })
        .collect()
}

#[derive(Tabled)]
struct OutcomeRow<'a> {
    account: &'a str,
    region: &'a str,
    succeeded: usize,
    applied: usize,
    pending: usize,
    failed: usize,
    #[tabled(rename = "not attempted")]
    not_attempted: usize,
}

/// One row per account-region, then a subtotal for accounts that span several regions.
fn outcome_rows(accounts: &[AccountOutcomes]) -> Vec<OutcomeRow<'_>> {
    let row = |account, region, c: &OutcomeCounts| OutcomeRow {
        account,
        region,
        succeeded: c.succeeded,
        applied: c.applied,
        pending: c.pending,
        failed: c.failed,
        not_attempted: c.not_attempted,
    };
    let mut rows = Vec::new();
    for account in accounts {
        let id = account.account_id.as_str();
        rows.extend(account.regions.iter().map(|r| row(id, r.region.as_str(), &r.counts)));
        if account.regions.len() > 1 {
            rows.push(row(id, "all regions", &account.totals));
        }
    }
    rows
}

/// One change that did not succeed.
#[derive(Debug, Clone, Serialize, Tabled)]
pub struct Failure {
    #[tabled(rename = "account")]
    pub account_id: String,
    pub region: String,
    #[tabled(rename = "instance")]
    pub instance_id: String,
    #[tabled(rename = "error")]
    pub error: String,
    #[tabled(display("display_hint"))]
    pub hint: Option<String>,
}

fn display_hint(hint: &Option<String>) -> String {
    hint.clone().unwrap_or_else(|| "-".to_owned())
}

impl EnforcementReport {
    /// Summarises the outcomes, sorted by account, region and instance.
    pub fn new(
        run_id: String,
        journal: PathBuf,
        elapsed: std::time::Duration,
        interrupted: bool,
        outcomes: &[Outcome],
        verification: Option<Verification>,
    ) -> Self {
        let accounts = by_account(outcomes);
        let mut all = OutcomeCounts::default();
        for account in &accounts {
            all += account.totals;
        }
        let mut failures: Vec<Failure> = outcomes
            .iter()
            .filter_map(|o| match &o.result {
                ChangeResult::Failed(error) => Some(failure(&o.change, error)),
                _ => None,
            })
            .collect();
        failures.sort_by(|a, b| {
            (&a.account_id, &a.region, &a.instance_id).cmp(&(
                &b.account_id,
                &b.region,
                &b.instance_id,
            ))
        });
        EnforcementReport {
            kind: "enforcement_report",
            run_id,
            journal,
            elapsed_seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            interrupted,
            succeeded: all.succeeded,
            applied: all.applied,
            pending: all.pending,
            failed: all.failed,
            not_attempted: all.not_attempted,
            accounts,
            failures,
            verification,
        }
    }

    /// Whether every change succeeded and was found in place when read back.
    pub fn is_complete(&self) -> bool {
        let verified = self.verification.as_ref().is_none_or(|v| {
            v.mismatches.is_empty() && v.unreadable.is_empty() && v.still_pending.is_empty()
        });
        self.failed == 0 && self.not_attempted == 0 && verified
    }

    /// The final report for people.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let verb = if self.interrupted { "Interrupted" } else { "Finished" };
        writeln!(
            out,
            "{verb} after {:.1}s: {} succeeded ({} applied, {} pending), {} failed, {} not attempted",
            self.elapsed_seconds,
            self.succeeded,
            self.applied,
            self.pending,
            self.failed,
            self.not_attempted
        )?;
        if !self.accounts.is_empty() {
            writeln!(out, "{}", styled(Table::new(outcome_rows(&self.accounts))))?;
        }
        if !self.failures.is_empty() {
            writeln!(out, "Failures:")?;
            writeln!(out, "{}", styled(Table::new(&self.failures)))?;
        }
        if let Some(verification) = &self.verification {
            write_verification(out, verification)?;
        }
        writeln!(out, "Journal: {}", self.journal.display())
    }
}

fn write_verification(out: &mut dyn Write, v: &Verification) -> io::Result<()> {
    let verified = count(v.verified, "instance");
    write!(out, "Verified: {verified} read back with the new setting")?;
    if v.recovered > 0 {
        write!(out, " ({} of them after a failed call that took effect anyway)", v.recovered)?;
    }
    writeln!(out)?;
    for m in &v.mismatches {
        writeln!(
            out,
            "  NOT IN PLACE: {} {} {}: {}",
            m.account_id, m.region, m.instance_id, m.found
        )?;
    }
    for p in &v.still_pending {
        writeln!(out, "  still pending: {} {} {}", p.account_id, p.region, p.instance_id)?;
    }
    for unreadable in &v.unreadable {
        writeln!(out, "  could not read back {unreadable}")?;
    }
    Ok(())
}

fn failure(change: &Change, error: &crate::aws_error::ApiError) -> Failure {
    Failure {
        account_id: change.account_id.clone(),
        region: change.region.clone(),
        instance_id: change.instance_id.clone(),
        error: sanitize(&error.to_string()),
        hint: error.hint().map(str::to_owned),
    }
}

/// Writes any report as one JSON line.
pub fn write_json(out: &mut dyn Write, report: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, report)?;
    writeln!(out)
}
