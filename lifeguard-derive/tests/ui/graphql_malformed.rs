use lifeguard_core::LifeModel;

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "users", graphql(name = "User", hidden))]
pub struct User {
    #[lifeguard(primary_key, graphql(rename = "key"))]
    pub id: i64,
    #[lifeguard(graphql(name = "2fast"))]
    pub speed: i32,
    #[lifeguard(graphql(skip, name = "x"))]
    pub secret: String,
    #[lifeguard(graphql)]
    pub bare: String,
    #[lifeguard(ignore, graphql(skip))]
    pub scratch: u32,
}

#[derive(Clone, LifeModel)]
#[lifeguard(table_name = "posts", graphql(skip))]
pub struct Post {
    #[lifeguard(primary_key, graphql(name = "__id"))]
    pub id: i64,
}

fn main() {}
