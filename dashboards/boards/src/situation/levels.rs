//! Area security levels: the level each area of a country shows, and its timeline line.
//!
//! Promises: the newest level of an area replaces the one before; a country shows the highest
//! level of its areas, and the countries at `High` or above are counted as they cross it.

use events::domain::level::AreaSecurityLevelSet;
use events::validate::SecurityLevel;

use super::{AreaLevel, At, Effects, Situation, bump, text};

impl Situation {
    /// Folds an area's new security level.
    pub(super) fn fold_level(&mut self, e: AreaSecurityLevelSet, at: At, fx: &mut Effects) {
        let state = self.country_mut(e.country, fx);
        let was = state.level;
        let previous = state
            .areas
            .get(&e.area)
            .map(|a| a.level)
            .or(e.previous_level);
        let item = text::level_set(&e.area, e.country, e.level, previous);
        fx.area = Some(e.area.clone());
        state.areas.insert(
            e.area,
            AreaLevel {
                level: e.level,
                reason: e.reason,
                set_at: at.time,
            },
        );
        state.level = state.areas.values().map(|a| a.level).max();
        let high = |l: Option<SecurityLevel>| l >= Some(SecurityLevel::High);
        let now = state.level;
        if high(was) != high(now) {
            bump(&mut self.counters.countries_level_5_plus, high(now), 1);
        }
        self.note(at, fx, item);
    }
}
