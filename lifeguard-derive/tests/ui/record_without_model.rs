use lifeguard_core::LifeRecord;

#[derive(Clone, LifeRecord)]
pub struct User {
    #[lifeguard(primary_key)]
    pub id: i64,
}

fn main() {}
