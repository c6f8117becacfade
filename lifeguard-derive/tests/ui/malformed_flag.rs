use lifeguard_core::LifeModel;

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "users")]
pub struct User {
    #[lifeguard(primary_key = 3)]
    pub id: i64,
    #[lifeguard(auto_increment, auto_increment)]
    pub seq: i64,
    #[lifeguard(ignore, primary_key)]
    pub cached: i64,
}

fn main() {}
