fn main() {
    for crd in ktwin_model::all_crds() {
        println!("---\n{}", serde_yaml_ng::to_string(&crd).unwrap());
    }
}
