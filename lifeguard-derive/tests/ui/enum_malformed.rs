use lifeguard_core::LifeEnum;

#[derive(LifeEnum)]
#[lifeguard(repr = "u8")]
pub enum BadRepr {
    A,
}

#[derive(LifeEnum)]
pub enum WithFields {
    A(i32),
}

#[derive(LifeEnum)]
pub enum Duplicate {
    Draft,
    #[lifeguard(rename = "draft")]
    Other,
}

fn main() {}
