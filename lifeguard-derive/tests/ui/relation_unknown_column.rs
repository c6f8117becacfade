use lifeguard_core::LifeModel;

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "posts")]
pub struct Post {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub author_id: i64,
}

// `to` must name a column of the related model: checked at compile time.
#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "editors", has_many(Post, from = "id", to = "editor_id"))]
pub struct Editor {
    #[lifeguard(primary_key)]
    pub id: i64,
}

fn main() {}
