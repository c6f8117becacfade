use lifeguard_core::LifeModel;

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "users")]
pub struct User {
    #[lifeguard(primary_key)]
    pub id: i64,
    #[lifeguard(column_name = email)]
    pub email: String,
    #[lifeguard(column_name = 5)]
    pub age: i32,
    #[lifeguard(column_name)]
    pub name: String,
}

fn main() {}
