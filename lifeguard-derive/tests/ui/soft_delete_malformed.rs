use lifeguard_core::LifeModel;

// No `deleted_at` column.
#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "a", soft_delete)]
pub struct A {
    #[lifeguard(primary_key)]
    pub id: i64,
}

// The named column is not nullable.
#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "b", soft_delete = "removed_at")]
pub struct B {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub removed_at: chrono::DateTime<chrono::Utc>,
}

// Not a string.
#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "c", soft_delete = removed_at)]
pub struct C {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub removed_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn main() {}
