//! What a batched load loads: the [`many`] and [`one`] specs, nested with `with`, and
//! tuples of specs side by side.

use std::fmt;

use super::level::load_groups;
use crate::error::Result;
use crate::executor::Executor;
use crate::model::relation::def::Related;
use crate::model::shapes::Order;
use crate::model::LifeModel;
use crate::query::{Expr, Select};

/// What to load for a list of parents `P`: [`Many`], [`One`], or a tuple of specs (each
/// loaded in turn, results side by side).
pub trait LoadSpec<P: LifeModel> {
    /// What each parent gets.
    type Out;

    /// Loads for every parent, in order: one query for this level (none when there are no
    /// keys), plus those of the nested specs.
    fn load_for<E: Executor + ?Sized>(&self, db: &E, parents: &[P]) -> Result<Vec<Self::Out>>;
}

/// What happens to loaded children: kept as they are ([`Leaf`]) or given their own
/// children ([`With`]).
pub trait Nest<R: LifeModel> {
    /// One loaded child, with whatever was loaded for it.
    type Item;

    /// Loads what the children need, for all groups of the level at once (one group per
    /// parent); returns the groups in the same shape.
    fn attach<E: Executor + ?Sized>(
        &self,
        db: &E,
        groups: Vec<Vec<R>>,
    ) -> Result<Vec<Vec<Self::Item>>>;
}

/// Children loaded with nothing below them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Leaf;

impl<R: LifeModel> Nest<R> for Leaf {
    type Item = R;

    fn attach<E: Executor + ?Sized>(&self, _db: &E, groups: Vec<Vec<R>>) -> Result<Vec<Vec<R>>> {
        Ok(groups)
    }
}

/// Children each loaded with `S` (set by [`Many::with`] / [`One::with`]).
#[derive(Debug, Clone)]
pub struct With<S>(pub S);

impl<R: LifeModel, S: LoadSpec<R>> Nest<R> for With<S> {
    type Item = (R, S::Out);

    fn attach<E: Executor + ?Sized>(
        &self,
        db: &E,
        groups: Vec<Vec<R>>,
    ) -> Result<Vec<Vec<(R, S::Out)>>> {
        // The next level loads for every child of this level at once.
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let children: Vec<R> = groups.into_iter().flatten().collect();
        let nested = self.0.load_for(db, &children)?;
        let mut items = children.into_iter().zip(nested);
        Ok(sizes
            .into_iter()
            .map(|n| items.by_ref().take(n).collect())
            .collect())
    }
}

/// Loads every related `R` of each parent (`has_many`, `has_many_through`, or any
/// relation as a list); build it with [`many`].
pub struct Many<R: LifeModel, N = Leaf> {
    select: Select<R>,
    nest: N,
}

/// Loads the related `R` of each parent, if any (`belongs_to`, `has_one`); build it with
/// [`one`].
pub struct One<R: LifeModel, N = Leaf> {
    select: Select<R>,
    nest: N,
}

/// Loads all related `R`s of each parent: `many::<Post>()`, nested with
/// `.with(many::<Comment>())`, refined with `.filter(...)`.
///
/// ```
/// # use lifeguard_core::LifeModel;
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "posts")]
/// # pub struct Post { #[lifeguard(primary_key)] pub id: i64, pub published: bool }
/// use lifeguard_core::model::many;
/// use lifeguard_core::query::ColumnExpr;
///
/// let published = many::<Post>().filter(PostColumn::Published.eq(true));
/// ```
pub fn many<R: LifeModel>() -> Many<R> {
    Many {
        select: R::find(),
        nest: Leaf,
    }
}

/// Loads the related `R` of each parent, if any: `one::<Author>()`.
pub fn one<R: LifeModel>() -> One<R> {
    One {
        select: R::find(),
        nest: Leaf,
    }
}

macro_rules! spec_builders {
    ($ty:ident) => {
        impl<R: LifeModel, N> $ty<R, N> {
            /// Loads `spec` for each loaded `R` too (one more query per level).
            pub fn with<S: LoadSpec<R>>(self, spec: S) -> $ty<R, With<S>> {
                $ty {
                    select: self.select,
                    nest: With(spec),
                }
            }

            /// Loads only the related rows matching `condition`.
            pub fn filter(mut self, condition: impl Into<Expr>) -> Self {
                self.select = self.select.filter(condition);
                self
            }

            /// Refines the query the related rows come from: filters, and the order of
            /// each parent's children (without one, [`Many`] keeps the server's order and
            /// [`One`] takes the child with the lowest primary key). A limit applies to the
            /// whole level, not per parent.
            pub fn query(mut self, f: impl FnOnce(Select<R>) -> Select<R>) -> Self {
                self.select = f(self.select);
                self
            }

            /// Includes soft-deleted related rows.
            pub fn with_deleted(mut self) -> Self {
                self.select = self.select.with_deleted();
                self
            }
        }

        impl<R: LifeModel, N: fmt::Debug> fmt::Debug for $ty<R, N> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("model", &std::any::type_name::<R>())
                    .field("select", &self.select.build().0)
                    .field("nest", &self.nest)
                    .finish()
            }
        }
    };
}
spec_builders!(Many);
spec_builders!(One);

/// Loads the level, then the next level for all children at once, and regroups.
fn load_level<P, R, N, E>(
    db: &E,
    select: &Select<R>,
    order: Order,
    nest: &N,
    parents: &[P],
) -> Result<Vec<Vec<N::Item>>>
where
    P: Related<R>,
    R: LifeModel,
    N: Nest<R>,
    E: Executor + ?Sized,
{
    let groups = load_groups::<P, R, E>(db, select, order, parents)?;
    nest.attach(db, groups)
}

impl<P, R, N> LoadSpec<P> for Many<R, N>
where
    P: Related<R>,
    R: LifeModel,
    N: Nest<R>,
{
    type Out = Vec<N::Item>;

    fn load_for<E: Executor + ?Sized>(&self, db: &E, parents: &[P]) -> Result<Vec<Self::Out>> {
        load_level(db, &self.select, Order::AsSent, &self.nest, parents)
    }
}

impl<P, R, N> LoadSpec<P> for One<R, N>
where
    P: Related<R>,
    R: LifeModel,
    N: Nest<R>,
{
    type Out = Option<N::Item>;

    fn load_for<E: Executor + ?Sized>(&self, db: &E, parents: &[P]) -> Result<Vec<Self::Out>> {
        Ok(
            load_level(db, &self.select, Order::ByChildKey, &self.nest, parents)?
                .into_iter()
                .map(|group| group.into_iter().next())
                .collect(),
        )
    }
}

macro_rules! tuple_spec {
    ($($s:ident $v:ident),+) => {
        impl<P: LifeModel, $($s: LoadSpec<P>),+> LoadSpec<P> for ($($s,)+) {
            type Out = ($($s::Out,)+);

            fn load_for<E: Executor + ?Sized>(&self, db: &E, parents: &[P]) -> Result<Vec<Self::Out>> {
                #[allow(non_snake_case)]
                let ($($s,)+) = self;
                $(let mut $v = $s.load_for(db, parents)?.into_iter();)+
                Ok((0..parents.len())
                    .map(|_| ($($v.next().expect("one result per parent"),)+))
                    .collect())
            }
        }
    };
}
tuple_spec!(A a, B b);
tuple_spec!(A a, B b, C c);
tuple_spec!(A a, B b, C c, D d);
