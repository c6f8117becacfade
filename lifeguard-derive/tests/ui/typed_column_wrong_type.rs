use lifeguard_core::model::LifeModel as _;
use lifeguard_core::LifeModel;

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "users")]
pub struct User {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub email: String,
    pub age: Option<i32>,
}

fn main() {
    // A number for a text column.
    let _ = User::find().filter(User::COL_EMAIL.eq(5));
    // An `i64` for an `Option<i32>` column: no widening.
    let _ = User::COL_AGE.gt(5_i64);
    // `like` is for text columns.
    let _ = User::COL_AGE.like("1%");
    // Assignments are checked like comparisons.
    let _ = User::update_many().set_value(User::COL_EMAIL, 5);
}
