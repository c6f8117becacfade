use lifeguard_core::LifeModel;

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "a", created_at)]
pub struct A {
    #[lifeguard(primary_key)]
    pub id: i64,
    #[lifeguard(created_at)]
    pub made: String,
    #[lifeguard(updated_at = "now()")]
    pub changed: chrono::NaiveDateTime,
    #[lifeguard(updated_at)]
    pub first: chrono::NaiveDateTime,
    #[lifeguard(updated_at)]
    pub second: chrono::NaiveDateTime,
    #[lifeguard(ignore, created_at)]
    pub cached: Option<chrono::NaiveDateTime>,
}

fn main() {}
