use lifeguard_core::LifeModel;

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "posts")]
pub struct Post {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub author_id: i64,
}

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "authors", has_many(Post, from = "uid", to = "author_id"))]
#[lifeguard(has_one(Post, from = "id"))]
#[lifeguard(belongs_to(Post, from = "id", to = "id", via = Post))]
#[lifeguard(has_many_through(Post, from = "id", to = "id"))]
pub struct Author {
    #[lifeguard(primary_key)]
    pub id: i64,
}

fn main() {}
