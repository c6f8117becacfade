use lifeguard_core::LifeModel;

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "users")]
pub struct User {
    pub id: i64,
    #[lifeguard(ignore)]
    pub cached: i64,
}

fn main() {}
