//! Relocation orders: ordered, their roll call (entries, arrivals, leavers, persons marked),
//! completed or rescinded.
//!
//! Promises: an order's counts follow its roll call; an order that ends leaves the state.

use std::collections::{HashMap, HashSet};

use events::domain::DomainEvent;
use events::domain::relocation::PersonStatus;

use super::{At, Effects, Order, Situation, bump, text};

impl Situation {
    /// Folds one event of this family (`mod.rs` sends no other here).
    pub(super) fn fold_order(&mut self, event: DomainEvent, at: At, fx: &mut Effects) {
        use DomainEvent as E;
        match event {
            E::RelocationOrdered(e) => {
                let order = Order {
                    country: e.country,
                    ordered_pos: at.position,
                    kind: e.kind,
                    scope: e.scope,
                    area: e.area,
                    duty_station: e.duty_station,
                    destination: e.destination,
                    deadline: e.deadline,
                    roll: HashMap::new(),
                    late: HashSet::new(),
                    left: HashSet::new(),
                    accounted: 0,
                    missing: 0,
                };
                self.country_mut(e.country, fx)
                    .orders
                    .insert(at.position, at.id);
                bump(&mut self.counters.active_orders, true, 1);
                self.note(at, fx, text::order_issued(&order));
                self.orders.insert(at.id, order);
            }
            E::RollCallEntryAdded(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                if order.roll.contains_key(&e.person) {
                    // On it from the order after all (a large roll call is written in
                    // chunks): not a late arrival.
                    if order.late.remove(&e.person) {
                        let country = order.country;
                        self.country_mut(country, fx);
                    }
                    return;
                }
                order.roll.insert(e.person, None);
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::PersonArrivedInArea(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                if order.roll.contains_key(&e.person) {
                    // Back in the area.
                    if !order.left.remove(&e.person) {
                        return;
                    }
                } else {
                    order.roll.insert(e.person.clone(), None);
                    order.late.insert(e.person);
                }
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::PersonLeftArea(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                if !order.roll.contains_key(&e.person) || !order.left.insert(e.person) {
                    return;
                }
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::PersonMarked(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                // A mark for someone not on the roll call puts them on it: a person marked
                // missing must count even if the roll call entry never arrived.
                let before = order.roll.insert(e.person, Some(e.status)).flatten();
                for (status, add) in [(before, false), (Some(e.status), true)] {
                    match status {
                        Some(
                            PersonStatus::Safe | PersonStatus::Relocated | PersonStatus::Injured,
                        ) => {
                            bump(&mut order.accounted, add, 1);
                        }
                        Some(PersonStatus::Missing) => bump(&mut order.missing, add, 1),
                        None => {}
                    }
                }
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::OrderCompleted(_) => self.end_order(at, fx, true),
            E::OrderRescinded(_) => self.end_order(at, fx, false),
            // Not of this family: `fold` in `mod.rs` does not send it here.
            _ => {}
        }
    }

    /// Ends an order: completed, or rescinded.
    pub(super) fn end_order(&mut self, at: At, fx: &mut Effects, completed: bool) {
        let Some(order) = self.orders.remove(&at.id) else {
            return;
        };
        self.country_mut(order.country, fx)
            .orders
            .remove(&order.ordered_pos);
        bump(&mut self.counters.active_orders, false, 1);
        self.note(at, fx, text::order_ended(&order, completed));
    }
}
