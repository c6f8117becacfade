use lifeguard_core::{FromRow, LifeModel};

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "users", tablename = "users")]
pub struct User {
    #[lifeguard(primary_key)]
    pub id: i64,
    #[lifeguard(colum_name = "email")]
    pub email: String,
    #[lifeguard(table_name = "x")]
    pub name: String,
}

#[derive(FromRow)]
pub struct Projection {
    #[lifeguard(primary_key)]
    pub id: i64,
}

fn main() {}
