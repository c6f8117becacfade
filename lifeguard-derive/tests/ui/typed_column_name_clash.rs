use lifeguard_core::LifeModel;

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "points")]
#[allow(non_snake_case)]
pub struct Point {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub xY: i32,
    pub Xy: i32,
}

fn main() {}
