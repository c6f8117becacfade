use lifeguard_core::LifeModel;

#[derive(Clone, LifeModel)]
#[lifeguard(schema_name = "app")]
pub struct User {
    #[lifeguard(primary_key)]
    pub id: i64,
}

fn main() {}
