use lifeguard_core::{FromRow, LifeModel};

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "users")]
pub struct Tuple(#[lifeguard(primary_key)] i64, String);

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "colors")]
pub enum Color {
    Red,
}

#[derive(FromRow)]
pub struct Unit;

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "things")]
pub struct Generic<T> {
    #[lifeguard(primary_key)]
    pub id: T,
}

fn main() {}
